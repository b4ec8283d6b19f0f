"""Field-by-field reading of a frame prefix: which fields a (possibly truncated) frame holds.

The fast decoder refuses a truncated frame; this walker reports what is there instead, naming fields
the way the schema does (``eventTime``, ``trades.numInGroup``, ``trades[0].id``, ``symbol``) and the first
one that the bytes do not hold. For diagnosing captured bytes, and for published partial frames such
as ``shared/data/sbe/real_prefixes.json``. Slow on purpose: one field at a time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from btcpipe.binance.sbe_decode import Buffer, check_header
from btcpipe.binance.sbe_schema import HEADER, BlockSpec, MessageHeader
from btcpipe.domain.errors import MalformedFrameError

FieldValue = int | str
_HEADER_FIELDS = ("blockLength", "templateId", "schemaId", "version")


@dataclass(frozen=True, slots=True)
class PrefixReport:
    """What a frame prefix contains. ``missing`` names the first field not (fully) present."""

    header: MessageHeader | None
    message: str | None
    fields: dict[str, FieldValue] = field(default_factory=dict)
    missing: str | None = None
    bytes_present: int = 0
    partial: bytes = b""  # the bytes of ``missing`` that are present (little-endian, low bytes first)

    @property
    def truncated(self) -> bool:
        return self.missing is not None


class _PrefixEndsError(Exception):
    """The prefix ends inside the named field (control flow of the walk only, never escapes)."""

    def __init__(self, name: str, partial: bytes = b"") -> None:
        super().__init__(name)
        self.name = name
        self.partial = partial


class _Walk:
    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.n = len(data)
        self.fields: dict[str, FieldValue] = {}

    def read(self, name: str, pos: int, code: str) -> int:
        size = struct.calcsize("<" + code)
        if pos + size > self.n:
            raise _PrefixEndsError(name, bytes(self.data[pos : self.n]))
        (value,) = struct.unpack_from("<" + code, self.data, pos)
        self.fields[name] = int(value)
        return int(value)

    def block(self, pos: int, spec: BlockSpec, block_length: int, prefix: str) -> int:
        for f in spec.fields:
            self.read(prefix + f.name, pos + f.offset, f.code)
        if pos + block_length > self.n:
            raise _PrefixEndsError(f"{prefix}<{block_length - spec.block_length} appended bytes>")
        return pos + block_length


def decode_prefix(data: Buffer, *, header: MessageHeader | None = None) -> PrefixReport:
    """Walk ``data`` (a whole frame, or its first bytes) and report the fields it holds.

    ``header``: give it when ``data`` starts at the root block (the header was not captured). Raises
    ``SchemaIdError``/``SchemaVersionError``/``UnknownTemplateError`` for a header this codec cannot read
    and ``MalformedFrameError`` for a blockLength below the schema's; truncation is reported, not raised.
    """
    walk = _Walk(data)
    message: str | None = None
    try:
        pos = 0
        if header is None:
            for i, name in enumerate(_HEADER_FIELDS):
                walk.read(f"header.{name}", 2 * i, "H")
            header = MessageHeader._make(HEADER.unpack_from(data, 0))
            pos = HEADER.size
        spec = check_header(header)
        message = spec.name
        if header.block_length < spec.root.block_length:
            raise MalformedFrameError(
                f"{spec.name}: root blockLength {header.block_length} < the schema's {spec.root.block_length}"
            )
        pos = walk.block(pos, spec.root, header.block_length, "")
        for group in spec.groups:
            count_code = group.dimension.format[-1]  # numInGroup's type: u32 ("I") or u16 ("H")
            entry_length = walk.read(f"{group.name}.blockLength", pos, "H")
            count = walk.read(f"{group.name}.numInGroup", pos + 2, count_code)
            pos += group.dimension.size
            if count and entry_length < group.entry.block_length:
                raise MalformedFrameError(
                    f"{spec.name}: {group.name} entry blockLength {entry_length} < the schema's "
                    f"{group.entry.block_length}"
                )
            # Bounded by the data: every entry consumes >= 16 bytes or ends the walk.
            for i in range(count):
                pos = walk.block(pos, group.entry, entry_length, f"{group.name}[{i}].")
        length = walk.read("symbol.length", pos, "B")
        if pos + 1 + length > walk.n:
            raise _PrefixEndsError("symbol")
        try:
            walk.fields["symbol"] = str(data[pos + 1 : pos + 1 + length], "utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedFrameError(f"{spec.name}: symbol is not UTF-8") from exc
    except _PrefixEndsError as end:
        return PrefixReport(header, message, walk.fields, end.name, walk.n, end.partial)
    return PrefixReport(header, message, walk.fields, None, walk.n)
