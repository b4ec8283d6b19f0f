"""What the lake offers the services that write bronze (backfill, ingestor); ``Lake`` implements it."""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa


class AppendOutcome(Protocol):
    """What any bronze append reports back."""

    @property
    def rows_added(self) -> int: ...

    @property
    def rows_duplicate(self) -> int: ...


class BronzeSink(Protocol):
    """Appends exactly what arrived (``raw``) with its typed rows; idempotent, deduplicated by id."""

    def append_bronze(
        self, kind: str, symbol: str, table: pa.Table, *, raw: bytes, raw_format: str, source: str
    ) -> AppendOutcome: ...
