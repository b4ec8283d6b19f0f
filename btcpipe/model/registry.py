"""The model registry: versioned folders in the lake's object store and a movable ``production`` alias.

Layout (keys in any ``ObjectStore``, local directory or S3)::

    models/<name>/<version>/model.onnx | scaler.json | schema_v1.json | manifest.json
    models/<name>/aliases/production.json   {"version": ..., "stack": [...], "history": [...]}

Versions are ``v1, v2, ...``. A version becomes visible only once its manifest is written, and the
manifest is written last, so a crash mid-register leaves files no reader trusts. The alias file is one
object replaced atomically: ``stack`` is the promotion stack (``rollback`` pops it), ``history`` every
move ever made. Loading verifies every sha256 against the manifest.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import dataclass
from typing import Any

from btcpipe.domain.errors import LakeError, RegistryError
from btcpipe.lake.objects import ObjectStore
from btcpipe.model.artifacts import ALL_FILES, MANIFEST_FILE, ModelArtifacts

PRODUCTION = "production"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_VERSION = re.compile(r"v([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered model version: where its artifacts are and what its manifest says."""

    name: str
    version: str
    manifest: dict[str, Any]
    is_production: bool


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise RegistryError(f"invalid model name {name!r} (letters, digits, '_', '.', '-')")
    return name


def _version_number(version: str) -> int:
    match = _VERSION.fullmatch(version)
    if match is None:
        raise RegistryError(f"invalid model version {version!r} (expected v1, v2, ...)")
    return int(match.group(1))


def _aliased_version(name: str, alias: str, version: Any) -> str:
    """An alias may only name a version folder ``vN``: never ``..``, a path, or another model's folder."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise RegistryError(f"alias {alias!r} of model {name!r} points at {version!r}, not a version v1, v2, ...")
    return version


class ModelRegistry:
    """Versioned models in the lake (``vN`` folders) with aliases such as ``production``; no pickle is ever loaded."""

    def __init__(self, store: ObjectStore, *, prefix: str = "models") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    # --- keys -------------------------------------------------------------------------------------
    def _key(self, name: str, *parts: str) -> str:
        return "/".join((self.prefix, _check_name(name), *parts))

    def _alias_key(self, name: str, alias: str) -> str:
        if not _NAME.fullmatch(alias):
            raise RegistryError(f"invalid alias {alias!r} (letters, digits, '_', '.', '-')")
        return self._key(name, "aliases", f"{alias}.json")

    # --- reading ----------------------------------------------------------------------------------
    def versions(self, name: str) -> list[str]:
        """Registered versions (those with a manifest), oldest first."""
        base = self._key(name) + "/"
        found = set()
        for key in self.store.list(base):
            parts = key[len(base) :].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST_FILE and _VERSION.fullmatch(parts[0]):
                found.add(parts[0])
        return sorted(found, key=_version_number)

    def list(self, name: str) -> list[ModelVersion]:
        production = self.production_version(name)
        return [
            ModelVersion(name, v, self._manifest(name, v), v == production) for v in self.versions(name)
        ]

    def production_version(self, name: str) -> str | None:
        """The version the ``production`` alias points at, or None — one small read, fit for polling."""
        doc = self._alias(name, PRODUCTION)
        version = doc.get("version")
        return _aliased_version(name, PRODUCTION, version) if version else None

    def resolve(self, name: str, alias_or_version: str) -> str:
        if _VERSION.fullmatch(alias_or_version):
            if not self.store.exists(self._key(name, alias_or_version, MANIFEST_FILE)):
                raise RegistryError(f"model {name!r} has no version {alias_or_version}")
            return alias_or_version
        if alias_or_version == "latest":
            versions = self.versions(name)
            if not versions:
                raise RegistryError(f"model {name!r} has no registered version")
            return versions[-1]
        version = self._alias(name, alias_or_version).get("version")
        if not version:
            raise RegistryError(f"model {name!r} has no {alias_or_version!r} version")
        return _aliased_version(name, alias_or_version, version)

    def load(self, name: str, alias_or_version: str = PRODUCTION) -> ModelArtifacts:
        """The verified files of a version (or of what an alias points at)."""
        version = self.resolve(name, alias_or_version)
        files: dict[str, bytes] = {}
        for file in ALL_FILES:
            try:
                files[file] = self.store.get(self._key(name, version, file))
            except LakeError as exc:
                raise RegistryError(f"model {name!r} {version} is missing {file}: {exc}") from exc
        return ModelArtifacts.from_files(files).verify()

    # --- writing ----------------------------------------------------------------------------------
    def register(self, name: str, artifacts: ModelArtifacts) -> str:
        """Store verified artifacts as the next version; the manifest goes last so partial writes stay invisible."""
        artifacts.verify()
        existing = [_version_number(v) for v in self.versions(name)]
        version = f"v{max(existing, default=0) + 1}"
        for file in ALL_FILES:
            if file != MANIFEST_FILE:
                self.store.put(self._key(name, version, file), artifacts.files[file])
        self.store.put(self._key(name, version, MANIFEST_FILE), artifacts.files[MANIFEST_FILE])
        return version

    def promote(self, name: str, version: str, *, at_us: int | None = None) -> None:
        """Point ``production`` at ``version`` (which must load and verify); the previous one stays in history."""
        version = self.resolve(name, version)
        self.load(name, version)  # refuse to promote a tampered or incomplete version
        doc = self._alias(name, PRODUCTION)
        stack = [str(v) for v in doc.get("stack", [])]
        if stack and stack[-1] == version:
            return
        stack.append(version)
        self._write_alias(name, doc, stack, {"action": "promote", "version": version, "at_us": at_us})

    def rollback(self, name: str, *, at_us: int | None = None) -> str:
        """Move ``production`` back to the version promoted before the current one; return it."""
        doc = self._alias(name, PRODUCTION)
        stack = [str(v) for v in doc.get("stack", [])]
        if len(stack) < 2:
            raise RegistryError(f"model {name!r} has no earlier production version to roll back to")
        left = stack.pop()
        _aliased_version(name, PRODUCTION, stack[-1])  # a hand-edited stack may not send the alias outside vN
        self._write_alias(
            name, doc, stack, {"action": "rollback", "version": stack[-1], "from": left, "at_us": at_us}
        )
        return stack[-1]

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        return list(self._alias(name, PRODUCTION).get("history", []))

    # --- internals --------------------------------------------------------------------------------
    def _manifest(self, name: str, version: str) -> dict[str, Any]:
        data = self.store.get(self._key(name, version, MANIFEST_FILE))
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise RegistryError(f"model {name!r} {version}: manifest.json is not JSON") from exc
        return doc if isinstance(doc, dict) else {}

    def _alias(self, name: str, alias: str) -> dict[str, Any]:
        key = self._alias_key(name, alias)
        try:
            data = self.store.get(key)
        except LakeError:
            if self.store.exists(key):
                raise
            return {}
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise RegistryError(f"alias file {self.store.uri(key)} is not JSON") from exc
        if not isinstance(doc, dict):
            raise RegistryError(f"alias file {self.store.uri(key)} must hold an object")
        return doc

    def _write_alias(
        self, name: str, doc: dict[str, Any], stack: builtins.list[str], event: dict[str, Any]
    ) -> None:
        history = [*doc.get("history", []), {k: v for k, v in event.items() if v is not None}]
        new = {"alias": PRODUCTION, "version": stack[-1], "stack": stack, "history": history}
        self.store.put(self._alias_key(name, PRODUCTION), json.dumps(new, indent=2).encode())
