"""The one definition of R² and the directional hit rate, shared by evaluation, shadow scoring and the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from btcpipe.domain.errors import DataError
from btcpipe.domain.scores import directional_hit_rate, r_squared, score


def test_predicting_zero_scores_a_hit_rate_of_exactly_one_half() -> None:
    y = np.random.default_rng(1).normal(size=501)
    assert directional_hit_rate(y, np.zeros_like(y)) == 0.5
    assert score(y, np.zeros_like(y)).hit_rate == 0.5


def test_a_zero_prediction_is_half_a_hit_between_a_right_and_a_wrong_call() -> None:
    y = np.array([1.0, 1.0, 1.0, -2.0])
    assert directional_hit_rate(y, np.array([3.0, 3.0, 3.0, -1.0])) == 1.0
    assert directional_hit_rate(y, np.array([3.0, 3.0, 0.0, -1.0])) == 0.875
    assert directional_hit_rate(y, np.array([3.0, 3.0, -3.0, -1.0])) == 0.75


def test_rows_without_a_realized_move_are_not_scored_for_direction() -> None:
    y = np.array([0.0, 0.0, 2.0])
    assert directional_hit_rate(y, np.array([5.0, -5.0, 1.0])) == 1.0
    assert np.isnan(directional_hit_rate(np.zeros(3), np.ones(3)))


def test_r_squared_is_one_for_a_perfect_forecast_and_below_zero_for_predicting_zero() -> None:
    y = np.array([0.5, -1.0, 2.0, 0.25])
    assert r_squared(y, y) == 1.0
    assert r_squared(y, np.zeros_like(y)) == pytest.approx(1 - float(y @ y) / float(((y - y.mean()) ** 2).sum()))
    assert r_squared(y, np.zeros_like(y)) < 0.0
    assert np.isnan(r_squared(np.full(4, 0.3), y))


def test_the_single_scores_equal_the_fields_of_score() -> None:
    rng = np.random.default_rng(2)
    y = np.round(rng.normal(size=1000), 1)  # rounding leaves zero moves and ties in sign
    yhat = np.round(0.3 * y + rng.normal(size=1000), 1)
    s = score(y, yhat)
    assert s.r2 == r_squared(y, yhat)
    assert s.hit_rate == directional_hit_rate(y, yhat)


@pytest.mark.parametrize(
    ("y", "yhat", "message"),
    [
        (np.zeros(3), np.zeros(4), "same length"),
        (np.zeros(0), np.zeros(0), "zero rows"),
        (np.array([1.0, np.nan]), np.zeros(2), "non-finite"),
    ],
)
def test_unscorable_input_is_refused(y: np.ndarray, yhat: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        r_squared(y, yhat)
    with pytest.raises(DataError, match=message):
        directional_hit_rate(y, yhat)
