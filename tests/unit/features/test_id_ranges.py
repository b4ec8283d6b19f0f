"""Id ranges and the batch accept rule equal a set and the trade-by-trade loop they replace."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from btcpipe.features.id_ranges import IdRanges, accept_mask

ids_lists = st.lists(st.integers(min_value=-50, max_value=400), max_size=60)


@settings(max_examples=200)
@given(st.lists(ids_lists, max_size=6), st.integers(min_value=-60, max_value=420), ids_lists)
def test_id_ranges_behave_as_a_set(batches: list[list[int]], cutoff: int, probe: list[int]) -> None:
    ranges, reference = IdRanges(), set[int]()
    for b in batches:
        ranges.add(np.array(b, dtype=np.int64))
        reference.update(b)
    assert len(ranges) == len(reference)
    q = np.array(probe, dtype=np.int64)
    assert ranges.contains(q).tolist() == [i in reference for i in probe]
    assert np.all(ranges.lo[1:] > ranges.hi[:-1] + 1)  # disjoint and merged
    ranges.drop_below(cutoff)
    reference = {i for i in reference if i >= cutoff}
    assert ranges.contains(q).tolist() == [i in reference for i in probe]
    assert len(ranges) == len(reference)


def test_consecutive_ids_stay_one_range() -> None:
    ranges = IdRanges()
    for start in range(0, 10_000, 7):
        ranges.add(np.arange(start, start + 7, dtype=np.int64))
    assert ranges.n_ranges == 1
    assert len(ranges) == 10_003


def reference_accept(ids: list[int], ts: list[int], taken: set[int], floor: int) -> tuple[list[bool], int, int]:
    """The rule as the processor applied it trade by trade."""
    seen, mask, late, dup = set(taken), [], 0, 0
    for i, t in zip(ids, ts, strict=True):
        if i in seen:
            dup += 1
            mask.append(False)
        elif t < floor:
            late += 1
            mask.append(False)
        else:
            seen.add(i)
            mask.append(True)
    return mask, late, dup


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 20)), max_size=50),
       st.lists(st.integers(0, 40), max_size=20), st.integers(0, 20))
def test_accept_mask_equals_the_trade_by_trade_rule(rows: list[tuple[int, int]], taken: list[int], floor: int) -> None:
    ids = [i for i, _ in rows]
    ts = [t for _, t in rows]
    ranges = IdRanges()
    ranges.add(np.array(taken, dtype=np.int64))
    mask, late, dup = accept_mask(np.array(ids, dtype=np.int64), np.array(ts, dtype=np.int64), ranges, floor)
    assert (mask.tolist(), late, dup) == reference_accept(ids, ts, set(taken), floor)
