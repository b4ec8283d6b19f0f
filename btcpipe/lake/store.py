"""The object-store port under the lake and the model registry, and its local-directory adapter.

Keys are ``/``-separated relative paths. ``put`` is atomic: a reader sees the old object or the whole
new one, never a part (local: write a temp file in the same directory, fsync, rename; S3: a single PUT).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from btcpipe.domain.errors import LakeError


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically, replacing any object there."""
        ...

    def get(self, key: str) -> bytes:
        """Read the whole object; ``LakeError`` if it does not exist."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (recursive), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    def uri(self, key: str = "") -> str:
        """A human-readable location (``/abs/path`` or ``s3://bucket/prefix/key``)."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise LakeError(f"invalid object key {key!r}")
    return key


class LocalObjectStore:
    """A directory on the local filesystem."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise LakeError(f"cannot write {path}: {exc}") from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise LakeError(f"no object at {path}") from exc
        except OSError as exc:
            raise LakeError(f"cannot read {path}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)
