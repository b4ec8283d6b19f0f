"""A lake by address: what a task carries to another process or machine instead of an open ``Lake``."""

from __future__ import annotations

from dataclasses import dataclass

from btcpipe.lake.lake import Lake


@dataclass(frozen=True, slots=True)
class LakeRef:
    """A lake's URI (directory or ``s3://bucket/prefix``) and S3 endpoint; ``open`` gives the ``Lake``.

    Plain values, so it pickles: an open ``Lake`` holds an S3 client that does not travel between processes."""

    uri: str
    endpoint_url: str | None = None

    def open(self) -> Lake:
        return Lake.open(self.uri, endpoint_url=self.endpoint_url)
