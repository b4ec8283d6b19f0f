"""Repair of bronze before a backfill refills it: quarantine what contradicts its manifest, find id holes.

A part whose bytes do not hash to what its manifest says (or that the manifest lists but the store no longer
holds) cannot be trusted and would make every later append of overlapping ids fail. ``quarantine_bad_parts``
moves such a part aside under ``quarantine/`` (with a note saying why), drops it from the manifest, and
returns what it did; its ids become a hole. ``id_holes`` lists the holes ``btcpipe lake check`` reports
inside a span, so the backfill can fetch exactly those ids again.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import orjson

from btcpipe.domain.errors import LakeError
from btcpipe.domain.time import day_of, iso
from btcpipe.lake import keys
from btcpipe.lake.check import check_lake
from btcpipe.lake.lake import Lake
from btcpipe.lake.manifest import FileEntry, RawEntry, parquet_to_table, verify

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One object taken out of a manifest: where it was, where it went (``None`` if it was gone), why."""

    path: str
    moved_to: str | None
    reason: str
    rows: int
    first_id: int | None
    last_id: int | None


@dataclass(frozen=True, slots=True)
class IdHole:
    """Ids ``first_id..last_id`` (inclusive) are missing from bronze."""

    first_id: int
    last_id: int


def _problem(lake: Lake, entry: FileEntry | RawEntry) -> tuple[str, bytes | None]:
    """Why ``entry`` cannot be trusted ('' if it can), and its bytes when the store still has them."""
    try:
        data = lake.store.get(entry.path)
    except LakeError as exc:
        return f"missing: {exc}", None
    try:
        verify(entry, data)
        if isinstance(entry, FileEntry) and parquet_to_table(data, entry.path).num_rows != entry.rows:
            return f"{entry.path}: the row count differs from the manifest's {entry.rows}", data
    except LakeError as exc:
        return str(exc), data
    return "", data


def quarantine_bad_parts(lake: Lake, kind: str, symbol: str, start_us: int, end_us: int) -> list[Quarantined]:
    """Verify every part and raw payload of the days that ``[start_us, end_us)`` touches; move the bad ones
    aside and rewrite each affected manifest without them (copy first, then the manifest, then delete)."""
    first_day, last_day = day_of(start_us), day_of(end_us - 1)
    out: list[Quarantined] = []
    for day in lake.bronze_days(kind, symbol):
        if not first_day <= day <= last_day:
            continue
        manifest = lake.manifest(kind, symbol, day)
        if manifest is None:
            continue
        entries: list[FileEntry | RawEntry] = [*manifest.files, *manifest.raw]
        bad = [(entry, *_problem(lake, entry)) for entry in entries]
        bad = [(entry, reason, data) for entry, reason, data in bad if reason]
        if not bad:
            continue
        for entry, reason, data in bad:
            if data is not None:  # the copy and its note exist before the manifest forgets the original
                moved_to = keys.quarantine_key(entry.path)
                lake.store.put(moved_to, data)
                note = {"path": entry.path, "reason": reason, "manifest_entry": dataclasses.asdict(entry)}
                lake.store.put(moved_to + ".reason.json", orjson.dumps(note, option=orjson.OPT_INDENT_2))
        dropped = {entry.path for entry, _, _ in bad}
        kept = manifest.with_files([f for f in manifest.files if f.path not in dropped])
        lake.put_manifest(dataclasses.replace(kept, raw=tuple(r for r in manifest.raw if r.path not in dropped)))
        for entry, reason, data in bad:
            if data is not None:
                lake.store.delete(entry.path)
            moved = keys.quarantine_key(entry.path) if data is not None else None
            out.append(Quarantined(entry.path, moved, reason, entry.rows, entry.first_id, entry.last_id))
            log.warning("bronze object quarantined", extra={"path": entry.path, "moved_to": moved, "reason": reason,
                                                            "day": day.isoformat()})
    return out


def id_holes(lake: Lake, kind: str, symbol: str, start_us: int, end_us: int, *,
             first_id: int | None = None) -> list[IdHole]:
    """The unknown id gaps ``check_lake`` reports inside the span, plus the head ``first_id..`` (the span's
    first id, when known) up to the first id bronze holds. The tail is the resume's job."""
    if kind not in ("trades", "aggTrades"):
        raise LakeError(f"id holes are defined for trades and aggTrades, not {kind!r}")
    report = check_lake(lake, kind, symbol, start_us, end_us)
    holes = [IdHole(g.first_missing, g.last_missing) for d in report.days for g in d.unknown_gaps]
    held = [d.first_id for d in report.days if d.first_id is not None]
    if first_id is not None and held and first_id < min(held):
        holes.insert(0, IdHole(first_id, min(held) - 1))
    if holes:
        log.info("bronze holes in the span", extra={"kind": kind, "symbol": symbol, "start": iso(start_us),
                                                    "end": iso(end_us), "holes": len(holes),
                                                    "missing_ids": sum(h.last_id - h.first_id + 1 for h in holes)})
    return holes

