"""The object-store port under the lake and the model registry, and its local-directory adapter.

Keys are ``/``-separated relative paths. ``put`` is atomic: a reader sees the old object or the whole
new one, never a part (local: write a temp file in the same directory, fsync, rename; S3: a single PUT).
"""

from __future__ import annotations

import builtins
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from btcpipe.domain.errors import LakeError


class ObjectStore(Protocol):
    """The lake's object store port: put, get, list and delete objects by key (a directory or S3)."""

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

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        """The names of the directories directly under ``prefix`` (which ends with ``/``)."""
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)


class S3ObjectStore:
    """A bucket (and optional key prefix) on S3 or an S3-compatible endpoint such as ``moto_server``.

    ``put`` is one ``PutObject``: S3 makes an object visible only once its whole body has arrived, so a
    reader never sees a part of it. Listing is paginated (1000 keys per page).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_attempts: int = 5,
        page_size: int = 1000,
    ) -> None:
        import boto3
        from botocore.config import Config

        if not bucket:
            raise LakeError("S3 bucket name is empty")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.page_size = page_size  # keys per list request (S3 caps it at 1000)
        config = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, s3={"addressing_style": "path"})
        try:
            self._client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        except Exception as exc:  # botocore raises several unrelated types for bad configuration
            raise LakeError(f"cannot create an S3 client for s3://{bucket}: {exc}") from exc

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> LakeError:
        return LakeError(f"S3 {action} {self.uri(key)} failed: {exc}")

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("put", key, exc) from exc

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise LakeError(f"no object at {self.uri(key)}") from exc
            raise self._fail("get", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("get", key, exc) from exc
        return body

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail("head", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head", key, exc) from exc
        return True

    def _paginate(self, prefix: str, delimiter: str | None) -> tuple[list[str], list[str]]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = (self.prefix + "/" if self.prefix else "") + prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        dirs: list[str] = []
        kwargs: dict[str, str] = {"Bucket": self.bucket, "Prefix": full}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                **kwargs, PaginationConfig={"PageSize": self.page_size}
            )
            for page in pages:
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
                dirs.extend(item["Prefix"][strip:] for item in page.get("CommonPrefixes", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("list", prefix, exc) from exc
        return keys, dirs

    def list(self, prefix: str = "") -> list[str]:
        keys, _ = self._paginate(prefix, None)
        return sorted(keys)

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        """The names of the 'directories' directly under ``prefix`` (which ends with ``/``)."""
        _, dirs = self._paginate(prefix, "/")
        return sorted(d[len(prefix) :].rstrip("/") for d in dirs)

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("delete", key, exc) from exc

    def uri(self, key: str = "") -> str:
        path = "/".join(p for p in (self.prefix, key) if p)
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"


@runtime_checkable
class DirectoryListing(Protocol):
    """Optional fast path of a store: the child 'directories' under a prefix without listing every key."""

    def list_dirs(self, prefix: str) -> list[str]: ...


def list_dirs(store: ObjectStore, prefix: str) -> list[str]:
    """The names directly under ``prefix`` (ending with ``/``) that have keys below them, sorted."""
    if isinstance(store, DirectoryListing):
        return store.list_dirs(prefix)
    names = {k[len(prefix) :].split("/", 1)[0] for k in store.list(prefix) if "/" in k[len(prefix) :]}
    return sorted(names)


def open_store(uri: str, *, endpoint_url: str | None = None) -> ObjectStore:
    """A store for a local directory (``/path``, ``file:///path``) or ``s3://bucket/prefix``.

    For S3 the endpoint defaults to ``BTCPIPE_S3_ENDPOINT_URL`` (then boto3's own ``AWS_ENDPOINT_URL``),
    so a test or a laptop can point the lake at ``moto_server`` without code changes.
    """
    if not uri or not uri.strip():
        raise LakeError("empty lake location")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        endpoint = endpoint_url or os.environ.get("BTCPIPE_S3_ENDPOINT_URL") or None
        return S3ObjectStore(bucket, prefix, endpoint_url=endpoint)
    if "://" in uri and not uri.startswith("file://"):
        raise LakeError(f"unsupported lake location {uri!r}: use a directory or s3://bucket/prefix")
    return LocalObjectStore(uri.removeprefix("file://"))
