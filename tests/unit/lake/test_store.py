"""The local-directory store under real process death, and ``open_store``'s reading of locations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from btcpipe.domain.errors import LakeError
from btcpipe.lake.lake import Lake
from btcpipe.lake.objects import LocalObjectStore, S3ObjectStore, open_store

# Rewrites one 8 MB object over and over, each version filled with one byte value; prints before each put.
_WRITER = textwrap.dedent(
    """
    import sys
    from btcpipe.lake.objects import LocalObjectStore
    store = LocalObjectStore(sys.argv[1])
    n = 0
    while True:
        n += 1
        print(n, flush=True)
        store.put("bronze/obj.bin", bytes([n % 256]) * (8 << 20))
    """
)


def test_a_killed_put_never_leaves_a_half_object_visible(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    for kill_after in (1, 2, 3, 5, 8):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        for _ in range(kill_after):  # wait until the writer is inside its kill_after-th put
            assert proc.stdout.readline()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        store = LocalObjectStore(root)
        assert store.list() in ([], ["bronze/obj.bin"])  # temp files are never listed
        if store.list():
            data = store.get("bronze/obj.bin")
            assert len(data) == 8 << 20
            assert data.count(data[:1]) == len(data)  # one whole version, not a mix


def test_open_store_understands_paths_and_s3_uris(tmp_path: Path) -> None:
    local = open_store(f"file://{tmp_path}/a")
    assert isinstance(local, LocalObjectStore)
    assert local.uri() == str(tmp_path / "a")
    s3 = open_store("s3://bucket/some/prefix/", endpoint_url="http://127.0.0.1:9")
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix, s3.uri("k")) == ("bucket", "some/prefix", "s3://bucket/some/prefix/k")
    with pytest.raises(LakeError, match="unsupported lake location"):
        open_store("gs://bucket/x")
    with pytest.raises(LakeError, match="empty"):
        open_store(" ")
    with pytest.raises(LakeError, match="bucket name is empty"):
        open_store("s3:///x")
    assert isinstance(Lake.open(str(tmp_path / "b")).store, LocalObjectStore)
