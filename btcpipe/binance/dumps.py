"""Binance bulk dumps (data.binance.vision): daily ``trades`` / ``aggTrades`` zips, checked and parsed.

A day is taken whole or not at all: the zip is downloaded, its sha256 compared with the ``.CHECKSUM``
sibling, the archive opened and every CSV row parsed (the member's CRC is checked as it is read) before
the caller gets anything to write. A mismatch, a corrupt archive or a malformed row therefore leaves
nothing half-written. The CSV is parsed in line-aligned chunks so each chunk's exact bytes can be kept
in bronze beside its typed rows; the time unit (ms before 2025, µs after) is read off the first chunk
and every later chunk must agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import lzma
import random
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import httpx
import pyarrow as pa

from btcpipe.binance.rest_parsing import DumpKind, TimeUnit, parse_dump_csv
from btcpipe.domain.backoff import backoff_delay
from btcpipe.domain.errors import (
    ChecksumMismatchError,
    CorruptArchiveError,
    DataError,
    ExchangeError,
    ExchangeRequestError,
    ExchangeServerError,
    MalformedRecordError,
)

log = logging.getLogger(__name__)

DEFAULT_DUMPS_URL = "https://data.binance.vision"
DUMP_KINDS: tuple[DumpKind, ...] = ("trades", "aggTrades")
DEFAULT_CHUNK_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class DumpChunk:
    """Consecutive CSV rows of one dump: their exact bytes and the bronze table they parse to."""

    raw: bytes
    table: pa.Table


@dataclass(frozen=True, slots=True)
class DumpDay:
    """One downloaded daily dump, checksum-verified: which file it was, its sha256 and size, and its time unit."""

    kind: DumpKind
    symbol: str
    day: dt.date
    name: str  # the zip's file name
    sha256: str  # verified against the .CHECKSUM sibling
    zip_bytes: int
    time_unit: TimeUnit  # the unit the file's times were in (converted to µs in the tables)
    chunks: list[DumpChunk]

    @property
    def rows(self) -> int:
        return sum(c.table.num_rows for c in self.chunks)


def dump_name(kind: str, symbol: str, day: dt.date) -> str:
    return f"{symbol}-{kind}-{day.isoformat()}.zip"


def dump_path(kind: str, symbol: str, day: dt.date) -> str:
    return f"/data/spot/daily/{kind}/{symbol}/{dump_name(kind, symbol, day)}"


def parse_checksum(text: bytes, name: str) -> str:
    """The sha256 in a ``.CHECKSUM`` file (``<hex>  <name>``)."""
    parts = text.decode("ascii", "replace").split()
    if not parts or len(parts[0]) != 64 or any(c not in "0123456789abcdefABCDEF" for c in parts[0]):
        raise ChecksumMismatchError(f"{name}.CHECKSUM does not hold a sha256: {text[:100]!r}")
    if len(parts) > 1 and parts[1].lstrip("*") != name:
        raise ChecksumMismatchError(f"{name}.CHECKSUM names another file: {parts[1]!r}")
    return parts[0].lower()


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def _line_chunks(stream: _Readable, chunk_bytes: int) -> Iterator[bytes]:
    """Blocks of about ``chunk_bytes`` that end on a line boundary."""
    carry = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        block = carry + block
        cut = block.rfind(b"\n")
        if cut < 0:
            carry = block
            continue
        carry = block[cut + 1 :]
        yield block[: cut + 1]
    if carry.strip():
        yield carry


# What the zipfile module and its codecs raise on a damaged archive: a bad header or directory (BadZipFile,
# "negative seek value" ValueError, UnicodeDecodeError in a name), a damaged deflate/bzip2/LZMA stream
# (zlib.error, OSError, LZMAError, EOFError), a method or flag it does not implement (NotImplementedError)
# or an encrypted member (RuntimeError). All of them mean the same: the archive cannot be read.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError, RuntimeError,
               ValueError, struct.error)


def read_archive(
    kind: DumpKind, data: bytes, name: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> tuple[TimeUnit, list[DumpChunk]]:
    """Open a dump zip held in memory and parse its CSV member into chunks (all of it, or raise)."""
    if kind not in DUMP_KINDS:
        raise DataError(f"dumps hold {' and '.join(DUMP_KINDS)}, not {kind!r}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise CorruptArchiveError(f"{name}: not a readable zip archive ({type(exc).__name__}: {exc})") from exc
    with archive:
        members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
        wanted = name.removesuffix(".zip") + ".csv"
        member = wanted if wanted in members else (members[0] if len(members) == 1 else None)
        if member is None:
            raise CorruptArchiveError(f"{name}: expected the member {wanted}, found {archive.namelist()}")
        chunks: list[DumpChunk] = []
        unit: TimeUnit | None = None
        try:
            with archive.open(member) as stream:
                for block in _line_chunks(stream, chunk_bytes):
                    table, block_unit = parse_dump_csv(kind, block, time_unit=unit)
                    if table.num_rows:
                        unit = block_unit
                    chunks.append(DumpChunk(block, table))
        except MalformedRecordError as exc:
            raise MalformedRecordError(f"{name}: {exc}; nothing written") from exc
        except _ZIP_ERRORS as exc:
            what = f"{type(exc).__name__}: {exc}"
            raise CorruptArchiveError(f"{name}: archive is corrupt ({what}); nothing written") from exc
    return unit or "us", chunks


class DumpsClient:
    """Downloads and verifies daily dump archives from ``base_url`` (data.binance.vision or the local exchange)."""

    def __init__(
        self,
        base_url: str = DEFAULT_DUMPS_URL,
        *,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.chunk_bytes = chunk_bytes
        self.retries = 0
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"User-Agent": "btcpipe-backfill"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DumpsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, kind: str, symbol: str, day: dt.date) -> str:
        return self.base_url + dump_path(kind, symbol, day)

    def download(self, kind: DumpKind, symbol: str, day: dt.date) -> tuple[str, bytes, str]:
        """``(name, zip bytes, sha256)`` after checking the sha256 against ``.CHECKSUM``."""
        path = dump_path(kind, symbol, day)
        name = dump_name(kind, symbol, day)
        expected = parse_checksum(self._fetch(path + ".CHECKSUM"), name)
        data = self._fetch(path)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ChecksumMismatchError(
                f"{name}: sha256 is {actual} but {name}.CHECKSUM says {expected}; refused, nothing written"
            )
        return name, data, actual

    def fetch_day(self, kind: DumpKind, symbol: str, day: dt.date) -> DumpDay:
        """Download, verify and parse one day; raises before returning anything if any step fails."""
        name, data, sha = self.download(kind, symbol, day)
        unit, chunks = read_archive(kind, data, name, chunk_bytes=self.chunk_bytes)
        return DumpDay(kind, symbol, day, name, sha, len(data), unit, chunks)

    def _fetch(self, path: str) -> bytes:
        request = f"GET {self.base_url}{path}"
        failures = 0
        while True:
            error: ExchangeError
            try:
                resp = self._http.get(path)
            except httpx.TransportError as exc:
                error = ExchangeError(f"{request}: {type(exc).__name__}: {exc}", request=request)
            else:
                if resp.status_code == 200:
                    return resp.content
                if resp.status_code >= 500 or resp.status_code == 429:
                    error = ExchangeServerError(f"{request}: HTTP {resp.status_code}", status=resp.status_code,
                                                request=request)
                else:
                    hint = " (daily files appear the day after)" if resp.status_code == 404 else ""
                    raise ExchangeRequestError(f"{request}: HTTP {resp.status_code}{hint}", status=resp.status_code,
                                               request=request)
            failures += 1
            self.retries += 1
            if failures > self.max_retries:
                raise error
            delay = backoff_delay(failures, self.backoff_base_s, self.backoff_cap_s, self._rng)
            log.warning(
                "dump download failed; retrying",
                extra={"error": str(error), "attempt": failures, "backoff_s": round(delay, 3)},
            )
            self._sleep(delay)
