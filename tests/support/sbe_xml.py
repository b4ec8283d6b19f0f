"""An SBE decoder built at run time from Binance's XML schema (``stream_1_0.xml``), for cross-checks only.

Deliberately a different code path from the product's codec (``btcpipe.binance.sbe_*``, hand-written
tables): this one reads the message, group and data definitions from the XML, computes field offsets from
the primitive types' sizes, honours ``presence="constant"`` (no bytes) and the dimension types named in the
schema, and decodes into plain dicts keyed by the XML's field names. Little-endian, as the schema says.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PRIMITIVES = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
               "int64": "q", "uint64": "Q", "char": "c"}


@dataclass
class _Field:
    name: str
    fmt: str  # struct code, or "" for a constant (0 bytes on the wire)
    offset: int


@dataclass
class _Block:
    fields: list[_Field] = field(default_factory=list)
    groups: list[tuple[str, str, _Block]] = field(default_factory=list)  # (name, dimension composite, entry)
    data: list[str] = field(default_factory=list)  # varString8 names, in order


class XmlSbeDecoder:
    """Decode any message of the schema into ``{"templateId": ..., <field>: ..., <group>: [...], <data>: str}``."""

    def __init__(self, schema: Path) -> None:
        root = ET.parse(schema).getroot()
        self.schema_id = int(root.attrib["id"])
        self.version = int(root.attrib["version"])
        types = root.find("types")
        assert types is not None
        self._simple: dict[str, str] = {}
        self._composites: dict[str, list[tuple[str, str]]] = {}
        for node in types:
            tag = node.tag.split("}")[-1]
            if tag == "type":
                self._simple[node.attrib["name"]] = _PRIMITIVES[node.attrib["primitiveType"]]
            elif tag == "enum":
                self._simple[node.attrib["name"]] = _PRIMITIVES[node.attrib["encodingType"]]
            elif tag == "composite":
                self._composites[node.attrib["name"]] = [
                    (t.attrib["name"], _PRIMITIVES[t.attrib["primitiveType"]]) for t in node
                ]
        self._messages: dict[int, tuple[str, _Block]] = {}
        for msg in root:
            if msg.tag.split("}")[-1] == "message":
                self._messages[int(msg.attrib["id"])] = (msg.attrib["name"], self._block(msg))

    def _block(self, node: ET.Element) -> _Block:
        block, offset = _Block(), 0
        for child in node:
            tag = child.tag.split("}")[-1]
            if tag == "field":
                if child.attrib.get("presence") == "constant":
                    block.fields.append(_Field(child.attrib["name"], "", offset))
                    continue
                fmt = self._simple[child.attrib["type"]]
                block.fields.append(_Field(child.attrib["name"], fmt, offset))
                offset += struct.calcsize("<" + fmt)
            elif tag == "group":
                dimension = child.attrib.get("dimensionType", "groupSizeEncoding")
                block.groups.append((child.attrib["name"], dimension, self._block(child)))
            elif tag == "data":
                block.data.append(child.attrib["name"])
        return block

    def _composite(self, name: str, buf: bytes, pos: int) -> tuple[dict[str, int], int]:
        out: dict[str, int] = {}
        for part, fmt in self._composites[name]:
            (out[part],) = struct.unpack_from("<" + fmt, buf, pos)
            pos += struct.calcsize("<" + fmt)
        return out, pos

    @staticmethod
    def _fields(block: _Block, buf: bytes, start: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in block.fields:
            out[f.name] = True if not f.fmt else struct.unpack_from("<" + f.fmt, buf, start + f.offset)[0]
        return out

    def decode(self, frame: bytes) -> dict[str, Any]:
        header, pos = self._composite("messageHeader", frame, 0)
        if header["schemaId"] != self.schema_id or header["version"] != self.version:
            raise ValueError(f"not schema {self.schema_id}:{self.version}: {header}")
        name, block = self._messages[header["templateId"]]
        out = {"message": name, "templateId": header["templateId"], **self._fields(block, frame, pos)}
        pos += header["blockLength"]  # the header's blockLength, not our sum: a longer block still decodes
        for group_name, dimension, entry in block.groups:
            dims, pos = self._composite(dimension, frame, pos)
            rows = []
            for _ in range(dims["numInGroup"]):
                rows.append(self._fields(entry, frame, pos))
                pos += dims["blockLength"]
            out[group_name] = rows
        for data_name in block.data:
            (length,) = struct.unpack_from("<B", frame, pos)
            out[data_name] = frame[pos + 1 : pos + 1 + length].decode("utf-8")
            pos += 1 + length
        if pos != len(frame):
            raise ValueError(f"{name}: {len(frame) - pos} bytes left over")
        return out
