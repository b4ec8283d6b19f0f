"""``--fault KIND=RATE`` specs of ``btcpipe exchange serve``: REST faults become ``Faults.set`` keywords, stream
faults per-event rates; anything else is a usage error naming the spec."""

from __future__ import annotations

import click
import pytest

from btcpipe.cli.exchange import parse_faults


def test_rest_and_stream_faults_are_split_and_named_for_their_setters() -> None:
    rest, streams = parse_faults(["5xx=0.1", "truncate=0.05", "drop=0.01", "latency=0.2", "poison=0.02",
                                  "garbage=0.001", "skip-trade=0.01", "skip-depth=0.01", "stall=0.0001"])
    assert rest == {"error_rate": 0.1, "truncate_rate": 0.05, "drop_rate": 0.01, "latency_s": 0.2}
    assert streams == {"poison": 0.02, "garbage": 0.001, "skip-trade": 0.01, "skip-depth": 0.01, "stall": 0.0001}


@pytest.mark.parametrize("spec", ["poison", "poison=", "poison=-0.1", "poison=1.5", "poison=inf", "poison=nan",
                                  "latency=61", "flood=0.1", "=0.1"])
def test_bad_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_faults([spec])


def test_rest_failure_rates_may_not_sum_above_one() -> None:
    with pytest.raises(click.BadParameter, match="sum"):
        parse_faults(["5xx=0.6", "drop=0.6"])
