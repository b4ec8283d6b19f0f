"""Per-event stream fault rates: validated, seeded (a run repeats), and drawn only for the kinds they apply to."""

from __future__ import annotations

import pytest

from btcpipe.domain.errors import ConfigError
from btcpipe.exchange.streams.random_faults import NO_FAULT, StreamFaultRates


def test_no_rates_means_no_fault_and_no_randomness_consumed() -> None:
    rates = StreamFaultRates(seed=1)
    assert all(rates.draw(is_trade=True, is_depth=False) is NO_FAULT for _ in range(100))


def test_draws_follow_the_rates_and_repeat_with_the_seed() -> None:
    def draws(seed: int) -> list[tuple[bool, bool, bool, bool]]:
        rates = StreamFaultRates()
        rates.set({"poison": 0.02, "skip-trade": 0.5}, seed=seed)
        out = []
        for i in range(20_000):
            d = rates.draw(is_trade=i % 2 == 0, is_depth=False)
            out.append((d.garbage, d.poison, d.skip, d.stall))
        return out

    first = draws(7)
    assert first == draws(7)
    poison = sum(p for _, p, _, _ in first)
    assert 300 <= poison <= 500  # 2 % of 20 000, give or take
    assert not any(g or st for g, _, _, st in first)
    skipped_odd = sum(s for i, (_, _, s, _) in enumerate(first) if i % 2)
    assert skipped_odd == 0  # skip-trade never skips what is not a trade
    assert 4500 <= sum(s for _, _, s, _ in first) <= 5500


@pytest.mark.parametrize("rates", [{"poison": 1.5}, {"poison": -0.1}, {"flood": 0.1}])
def test_bad_rates_are_refused(rates: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=r"rate must be within|unknown stream fault"):
        StreamFaultRates().set(rates)  # type: ignore[arg-type]
