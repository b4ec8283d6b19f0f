"""Trade ids a symbol's state has taken, as sorted disjoint ranges, and the vectorised accept filter.

Exchange trade ids are consecutive per symbol, so the ids taken over the de-duplication window are a
handful of ranges (one, unless the stream skipped some), whatever the trade rate: membership of a
whole batch is one ``searchsorted``, adding a batch is a merge of a few ranges. Pure numpy, no IO.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class IdRanges:
    """A set of int64 ids stored as sorted, disjoint, non-adjacent inclusive ranges."""

    def __init__(self) -> None:
        self.lo = np.zeros(0, dtype=np.int64)
        self.hi = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        """How many ids the set holds."""
        return int((self.hi - self.lo + 1).sum())

    @property
    def n_ranges(self) -> int:
        return int(self.lo.shape[0])

    def contains(self, ids: I64) -> Bools:
        if self.lo.shape[0] == 0:
            return np.zeros(ids.shape[0], dtype=np.bool_)
        k = np.searchsorted(self.lo, ids, side="right") - 1
        return (k >= 0) & (ids <= self.hi[np.maximum(k, 0)])

    def add(self, ids: I64) -> None:
        if ids.shape[0] == 0:
            return
        s = np.sort(ids)
        breaks = np.flatnonzero(np.diff(s) > 1)
        lo = np.concatenate((self.lo, s[np.concatenate(([0], breaks + 1))]))
        hi = np.concatenate((self.hi, s[np.concatenate((breaks, [s.shape[0] - 1]))]))
        if self.lo.shape[0] and lo[self.lo.shape[0]] > self.hi[-1] + 1:
            self.lo, self.hi = lo, hi  # all new ids above the old ones: nothing to merge
            return
        order = np.argsort(lo, kind="stable")
        lo, hi = lo[order], hi[order]
        reach = np.maximum.accumulate(hi)
        starts = np.concatenate(([True], lo[1:] > reach[:-1] + 1))
        first = np.flatnonzero(starts)
        last = np.concatenate((first[1:] - 1, [lo.shape[0] - 1]))
        self.lo, self.hi = lo[first], reach[last]

    def drop_below(self, cutoff: int) -> None:
        """Forget every id below ``cutoff``."""
        keep = self.hi >= cutoff
        self.lo, self.hi = np.maximum(self.lo[keep], cutoff), self.hi[keep]

    def clear(self) -> None:
        self.lo = self.lo[:0]
        self.hi = self.hi[:0]


def accept_mask(ids: I64, ts: I64, taken: IdRanges, floor_us: int) -> tuple[Bools, int, int]:
    """Which trades of a batch (in arrival order) to take: (mask, late, duplicates).

    The rule, as for trades arriving one by one: a trade whose id was taken before (``taken``, or an
    earlier trade of this batch) is a duplicate; otherwise one before ``floor_us`` is late; the rest are
    taken. A late trade is not taken, so a later copy of it is late again, not a duplicate.
    """
    n = ids.shape[0]
    seen = taken.contains(ids)
    late = ts < floor_us
    fresh = ~seen & ~late
    if n > 1 and not bool((np.diff(ids) > 0).all()):
        # Repeats inside the batch: only the first fresh copy of an id is taken, later copies are duplicates.
        cand = np.flatnonzero(fresh)
        if cand.shape[0]:
            uniq, first = np.unique(ids[cand], return_index=True)
            first_at = cand[first]
            k = np.minimum(np.searchsorted(uniq, ids), uniq.shape[0] - 1)
            repeat = (uniq[k] == ids) & (first_at[k] < np.arange(n))
            seen |= repeat
            fresh &= ~repeat
    n_dup = int(seen.sum())
    n_late = int((late & ~seen).sum())
    return fresh, n_late, n_dup
