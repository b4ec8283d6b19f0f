"""Kinesis Data Streams bus (boto3): the AWS adapter, tested against ``moto_server`` over HTTP.

Publishing sends ``PutRecords`` in batches of at most 500 records / 5 MiB and re-sends only the records
the response marks as failed (capped exponential backoff, ``stats.publish_retries``). Kinesis does not
order a partially failed batch: a re-sent record lands after records of the same key that succeeded
first. Every payload carries its own event ids (trade id, update id, ts_sec), which the consumers use to
de-duplicate and order, so this is counted rather than hidden.

Reading resumes with ``GetShardIterator AFTER_SEQUENCE_NUMBER`` (``TRIM_HORIZON`` from the start); the
next iterator is cached so a steady reader makes one ``GetRecords`` call per read. Shard = the shard
whose hash-key range holds MD5(partition key), as Kinesis itself routes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from btcpipe.bus.port import STREAM_TRADES, BusRecord, BusStats, Position
from btcpipe.domain.errors import BusError

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
_AT_TIMESTAMP = "at:"  # a position "at:<epoch seconds>": records that arrived from that instant on


class KinesisClient(Protocol):
    """The boto3 Kinesis client methods this adapter uses (a wrapper can inject failures in tests)."""

    def put_records(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_records(self, **kwargs: Any) -> dict[str, Any]: ...
    def list_shards(self, **kwargs: Any) -> dict[str, Any]: ...
    def create_stream(self, **kwargs: Any) -> dict[str, Any]: ...
    def describe_stream_summary(self, **kwargs: Any) -> dict[str, Any]: ...


def kinesis_client(
    endpoint_url: str | None = None, region: str = "us-east-1", *, max_attempts: int = 3, timeout_s: float = 5.0
) -> Any:
    """A boto3 Kinesis client (``endpoint_url`` for moto_server or a local emulator).

    botocore's own retries cover transport errors; partial PutRecords failures are the adapter's job.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
    )
    return boto3.client("kinesis", endpoint_url=endpoint_url, region_name=region, config=config)


# Kinesis records have no metadata: a traced record is TRACED_MARKER, the traceparent's length (one byte), the
# traceparent, then the payload. The marker cannot start an Avro single-object payload (those start C3 01).
TRACED_MARKER = b"\xc3\xfe"


def wrap_traced(payload: bytes, traceparent: str) -> bytes:
    tp = traceparent.encode("ascii")
    if len(tp) > 255:
        raise BusError(f"a traceparent of {len(tp)} bytes does not fit the record envelope")
    return TRACED_MARKER + bytes((len(tp),)) + tp + payload


def _record(position: Position, sequence: str, key: str, data: bytes) -> BusRecord:
    if data[:2] != TRACED_MARKER or len(data) < 3:
        return BusRecord(position.stream, position.shard, sequence, key, data)
    end = 3 + data[2]
    return BusRecord(position.stream, position.shard, sequence, key, data[end:], data[3:end].decode("ascii", "replace"))


def _is_aws_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class KinesisBus:
    """The bus on Kinesis Data Streams (or moto_server): one Kinesis stream per bus stream, retried puts."""

    def __init__(
        self,
        client: KinesisClient,
        *,
        prefix: str = "btcpipe-",
        max_put_attempts: int = 8,
        backoff_s: float = 0.05,
        poll_interval_s: float = 0.2,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self.max_put_attempts = max_put_attempts
        self.backoff_s = backoff_s
        self.poll_interval_s = poll_interval_s
        self.stats = BusStats()
        self._lock = threading.Lock()
        self._shard_ranges: dict[str, list[tuple[str, int, int]]] = {}
        # The next iterator of each shard's last read, keyed by the position it continues from.
        self._iterators: dict[tuple[str, str], tuple[str | None, str]] = {}

    def stream_name(self, stream: str) -> str:
        return f"{self.prefix}{stream}"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = fn(**kwargs)
        except Exception as exc:
            if _is_aws_error(exc):
                raise BusError(f"Kinesis {what} failed: {exc}") from exc
            raise
        return result

    # --- streams and shards ------------------------------------------------------------------------
    def ensure_streams(self, streams: Sequence[str], shard_count: int = 1, timeout_s: float = 30.0) -> None:
        """Create the streams that do not exist yet and wait until every one is ACTIVE."""
        for stream in streams:
            try:
                self._client.create_stream(StreamName=self.stream_name(stream), ShardCount=shard_count)
            except Exception as exc:
                if not (_is_aws_error(exc) and _error_code(exc) == "ResourceInUseException"):
                    raise BusError(f"creating Kinesis stream {self.stream_name(stream)} failed: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        for stream in streams:
            while True:
                summary = self._call(
                    "DescribeStreamSummary", self._client.describe_stream_summary, StreamName=self.stream_name(stream)
                )
                if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                    break
                if time.monotonic() > deadline:
                    raise BusError(f"Kinesis stream {self.stream_name(stream)} not ACTIVE after {timeout_s}s")
                time.sleep(0.1)  # the API offers no event to wait on

    def _ranges(self, stream: str) -> list[tuple[str, int, int]]:
        with self._lock:
            cached = self._shard_ranges.get(stream)
        if cached is not None:
            return cached
        ranges: list[tuple[str, int, int]] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name(stream)}
        while True:
            page = self._call("ListShards", self._client.list_shards, **kwargs)
            for shard in page["Shards"]:
                if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                    continue  # closed by a reshard: no new records go there
                hk = shard["HashKeyRange"]
                ranges.append((shard["ShardId"], int(hk["StartingHashKey"]), int(hk["EndingHashKey"])))
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        ranges.sort(key=lambda r: r[1])
        with self._lock:
            self._shard_ranges[stream] = ranges
        return ranges

    def shards(self, stream: str) -> list[str]:
        return [shard_id for shard_id, _, _ in self._ranges(stream)]

    def shard_for(self, stream: str, key: str) -> str:
        h = int.from_bytes(hashlib.md5(key.encode("utf-8")).digest(), "big")  # Kinesis routes by MD5
        for shard_id, lo, hi in self._ranges(stream):
            if lo <= h <= hi:
                return shard_id
        raise BusError(f"no open shard of {self.stream_name(stream)} covers partition key {key!r}")

    # --- publish -----------------------------------------------------------------------------------
    def publish(
        self, stream: str, key: str, payloads: Sequence[bytes], traces: Sequence[str | None] | None = None
    ) -> int:
        if traces is not None:
            if len(traces) != len(payloads):
                raise BusError(f"{len(traces)} traces for {len(payloads)} payloads")
            payloads = [p if t is None else wrap_traced(p, t) for p, t in zip(payloads, traces, strict=True)]
        entry_overhead = len(key.encode("utf-8"))
        batch: list[dict[str, Any]] = []
        batch_bytes = 0
        written = 0
        for payload in payloads:
            size = len(payload) + entry_overhead
            if size > MAX_RECORD_BYTES:
                raise BusError(f"a {len(payload)}-byte payload exceeds Kinesis' 1 MiB record limit")
            if len(batch) == MAX_BATCH_RECORDS or batch_bytes + size > MAX_BATCH_BYTES:
                written += self._put_batch(stream, batch, written, len(payloads))
                batch, batch_bytes = [], 0
            batch.append({"Data": bytes(payload), "PartitionKey": key})
            batch_bytes += size
        if batch:
            written += self._put_batch(stream, batch, written, len(payloads))
        return written

    def _put_batch(self, stream: str, entries: list[dict[str, Any]], done: int, total: int) -> int:
        pending = entries
        for attempt in range(self.max_put_attempts):
            if attempt:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), 2.0))  # throttling: nothing to await
            result = self._call(
                "PutRecords", self._client.put_records, StreamName=self.stream_name(stream), Records=pending
            )
            failed = [entry for entry, res in zip(pending, result["Records"], strict=True) if "ErrorCode" in res]
            written = len(pending) - len(failed)
            self.stats.published += written
            if not failed:
                return len(entries)
            codes = sorted({res["ErrorCode"] for res in result["Records"] if "ErrorCode" in res})
            log.warning(
                "Kinesis PutRecords partially failed; re-sending the failed records only",
                extra={"stream": stream, "failed": len(failed), "of": len(pending), "codes": codes,
                       "attempt": attempt + 1},
            )
            self.stats.publish_retries += len(failed)
            pending = failed
        raise BusError(
            f"Kinesis PutRecords to {self.stream_name(stream)}: {len(pending)} records still failing after "
            f"{self.max_put_attempts} attempts ({done + len(entries) - len(pending)} of {total} written)"
        )

    # --- read --------------------------------------------------------------------------------------
    def _iterator(self, position: Position) -> str:
        with self._lock:
            cached = self._iterators.pop((position.stream, position.shard), None)
        if cached is not None and cached[0] == position.after:
            return cached[1]
        kwargs: dict[str, Any] = {"StreamName": self.stream_name(position.stream), "ShardId": position.shard}
        if position.after is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        elif position.after.startswith(_AT_TIMESTAMP):
            kwargs["ShardIteratorType"] = "AT_TIMESTAMP"
            kwargs["Timestamp"] = dt.datetime.fromtimestamp(float(position.after[len(_AT_TIMESTAMP) :]), tz=dt.UTC)
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = position.after
        return str(self._call("GetShardIterator", self._client.get_shard_iterator, **kwargs)["ShardIterator"])

    def read(self, position: Position, max_count: int = 1000, block_ms: int = 0) -> tuple[list[BusRecord], Position]:
        deadline = time.monotonic() + block_ms / 1000.0
        iterator = self._iterator(position)
        empty_pages = 0
        while True:
            try:
                result = self._client.get_records(ShardIterator=iterator, Limit=min(max_count, 10_000))
            except Exception as exc:
                code = _error_code(exc)
                if code == "ExpiredIteratorException":
                    iterator = self._iterator(position)
                    continue
                if code == "ProvisionedThroughputExceededException" and time.monotonic() < deadline:
                    time.sleep(self.poll_interval_s)
                    continue
                if _is_aws_error(exc):
                    raise BusError(f"Kinesis GetRecords on {position.shard} failed: {exc}") from exc
                raise
            raw = result.get("Records", [])
            next_iterator = result.get("NextShardIterator")
            if raw:
                records = [
                    _record(position, r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in raw
                ]
                new_position = Position(position.stream, position.shard, records[-1].id)
                if next_iterator:
                    with self._lock:
                        self._iterators[(position.stream, position.shard)] = (new_position.after, next_iterator)
                self.stats.read += len(records)
                return records, new_position
            if next_iterator is None:  # the shard was closed and fully read
                return [], position
            iterator = next_iterator
            # An empty page can sit in front of data (MillisBehindLatest > 0): skip ahead without waiting.
            empty_pages += 1
            if result.get("MillisBehindLatest", 0) > 0 and empty_pages < 100:
                continue
            if time.monotonic() >= deadline:
                with self._lock:
                    self._iterators[(position.stream, position.shard)] = (position.after, iterator)
                return [], position
            time.sleep(self.poll_interval_s)  # Kinesis has no blocking read; it is polled

    def end_position(self, stream: str, shard: str) -> Position:
        """Records that arrive from now on (``AT_TIMESTAMP``): Kinesis has no cheap 'last sequence number'."""
        if shard not in self.shards(stream):
            raise BusError(f"stream {self.stream_name(stream)} has no shard {shard!r}")
        return Position(stream, shard, f"{_AT_TIMESTAMP}{time.time():.6f}")

    def ping(self) -> None:
        """``BusError`` unless Kinesis answers for the trades stream (for readiness probes)."""
        try:
            self._client.describe_stream_summary(StreamName=self.stream_name(STREAM_TRADES))
        except Exception as exc:
            if _is_aws_error(exc):
                raise BusError(f"Kinesis does not answer: {exc}") from exc
            raise

    def close(self) -> None:
        with self._lock:
            self._iterators.clear()
