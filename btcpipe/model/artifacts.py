"""A trained model's files and their integrity: names, sha256 manifest, verification.

A model is four files: ``model.onnx`` (one self-contained ONNX graph), ``scaler.json``,
``schema_v1.json`` (the feature contract it was trained on, with its hash) and ``manifest.json`` (the
sha256 of every other file plus data range, metrics, versions, label mid and uncertainty). Nothing here
is ever unpickled; everything is bytes, JSON and hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btcpipe.domain.errors import ModelError, ModelIntegrityError

MODEL_FILE = "model.onnx"
SCALER_FILE = "scaler.json"
SCHEMA_FILE = "schema_v1.json"
MANIFEST_FILE = "manifest.json"
HASHED_FILES = (MODEL_FILE, SCALER_FILE, SCHEMA_FILE)
ALL_FILES = (*HASHED_FILES, MANIFEST_FILE)
MANIFEST_FORMAT = "btcpipe.model_manifest/1"
INPUT_NAME = "features"
OUTPUT_NAME = "yhat"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ModelArtifacts:
    """The bytes of a model's files, keyed by file name (``ALL_FILES``)."""

    files: Mapping[str, bytes]
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> ModelArtifacts:
        missing = [f for f in ALL_FILES if f not in files]
        if missing:
            raise ModelIntegrityError(f"model is missing files {missing}")
        return cls(files=dict(files), manifest=parse_json(files[MANIFEST_FILE], MANIFEST_FILE))

    @classmethod
    def from_directory(cls, path: str | Path) -> ModelArtifacts:
        root = Path(path)
        files: dict[str, bytes] = {}
        for name in ALL_FILES:
            try:
                files[name] = (root / name).read_bytes()
            except FileNotFoundError as exc:
                raise ModelIntegrityError(f"model directory {root} has no {name}") from exc
            except OSError as exc:
                raise ModelError(f"cannot read {root / name}: {exc}") from exc
        return cls.from_files(files)

    def write_directory(self, path: str | Path) -> Path:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (root / name).write_bytes(data)
        return root

    def verify(self) -> ModelArtifacts:
        """Check every hashed file against the manifest; raise ``ModelIntegrityError`` on any difference."""
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise ModelIntegrityError(
                f"manifest.json has format {self.manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}"
            )
        listed = self.manifest.get("artifacts")
        if not isinstance(listed, dict):
            raise ModelIntegrityError("manifest.json has no 'artifacts' table")
        for name in HASHED_FILES:
            entry = listed.get(name)
            if not isinstance(entry, dict) or "sha256" not in entry:
                raise ModelIntegrityError(f"manifest.json does not list a sha256 for {name}")
            actual = sha256_hex(self.files[name])
            if actual != entry["sha256"]:
                raise ModelIntegrityError(
                    f"{name} sha256 {actual} differs from the manifest's {entry['sha256']}: "
                    "the file was altered or truncated"
                )
        schema = parse_json(self.files[SCHEMA_FILE], SCHEMA_FILE)
        if schema.get("hash") != self.manifest.get("schema_hash"):
            raise ModelIntegrityError("schema_v1.json hash differs from the manifest's schema_hash")
        return self

    @property
    def schema(self) -> dict[str, Any]:
        return parse_json(self.files[SCHEMA_FILE], SCHEMA_FILE)


def build_manifest(
    *, model_onnx: bytes, scaler_json: bytes, schema_json: bytes, info: Mapping[str, Any]
) -> bytes:
    """The manifest of three artifact files plus descriptive ``info`` (data range, metrics, versions ...)."""
    schema = parse_json(schema_json, SCHEMA_FILE)
    files = {MODEL_FILE: model_onnx, SCALER_FILE: scaler_json, SCHEMA_FILE: schema_json}
    doc: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "artifacts": {name: {"sha256": sha256_hex(data), "bytes": len(data)} for name, data in files.items()},
        "schema_hash": schema.get("hash"),
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        **info,
    }
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False).encode()


def assemble(
    *, model_onnx: bytes, scaler_json: bytes, schema_json: bytes, info: Mapping[str, Any]
) -> ModelArtifacts:
    manifest = build_manifest(model_onnx=model_onnx, scaler_json=scaler_json, schema_json=schema_json, info=info)
    return ModelArtifacts.from_files(
        {MODEL_FILE: model_onnx, SCALER_FILE: scaler_json, SCHEMA_FILE: schema_json, MANIFEST_FILE: manifest}
    )


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelIntegrityError(f"{what} must hold a JSON object")
    return doc
