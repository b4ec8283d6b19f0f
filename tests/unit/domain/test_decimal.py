"""Exact decimals refuse what they cannot express with a MalformedRecordError, never IndexError or AttributeError:
the exponent and the text come off the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btcpipe.domain.decimal import (
    MAX_EXPONENT,
    MAX_MANTISSA,
    format_decimal,
    parse_decimal,
    rescale,
    to_float,
)
from btcpipe.domain.errors import MalformedRecordError


@pytest.mark.parametrize("exponent", [11, 12, 127, -27, -28, -128])
def test_rescale_refuses_exponents_beyond_the_power_table(exponent: int) -> None:
    with pytest.raises(MalformedRecordError, match="outside"):
        rescale(1, exponent)


def test_rescale_still_converts_every_shift_it_can_express() -> None:
    assert rescale(1, 10) == 10**18
    assert rescale(10**18, -26) == 1
    assert rescale(61837_63, -2) == 61837_63_000000


@pytest.mark.parametrize("exponent", [19, -19, 100])
def test_float_and_text_conversions_refuse_exponents_beyond_18(exponent: int) -> None:
    with pytest.raises(MalformedRecordError):
        to_float(1, exponent)
    with pytest.raises(MalformedRecordError):
        format_decimal(1, exponent)


@pytest.mark.parametrize("value", [61837.63, 1, None, True, ["1.0"], {"p": "1"}])
def test_parse_decimal_refuses_a_json_value_that_is_not_a_string(value: object) -> None:
    with pytest.raises(MalformedRecordError, match="not a decimal string"):
        parse_decimal(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["1" * 30, "1" * 5000, "10000000000.00000000", "٣.5", "²"])
def test_parse_decimal_refuses_more_than_18_digits_and_non_ascii_digits(text: str) -> None:
    with pytest.raises(MalformedRecordError):
        parse_decimal(text)


def test_parse_decimal_keeps_the_largest_18_digit_value() -> None:
    assert parse_decimal("9999999999.99999999") == MAX_MANTISSA


@given(st.integers(min_value=-200, max_value=200), st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_rescale_either_converts_exactly_or_refuses_with_the_error_tree(exponent: int, mantissa: int) -> None:
    try:
        out = rescale(mantissa, exponent)
    except MalformedRecordError:
        assert abs(exponent + 8) > MAX_EXPONENT or exponent < -8
        return
    assert out * 10 ** (-8) == pytest.approx(mantissa * 10.0**exponent, rel=1e-9)
