"""The one exception tree of btcpipe.

Adapters wrap library errors at their boundary (``raise LakeError(...) from exc``) so callers handle
btcpipe's own types only. Each class says what went wrong, not where.
"""

from __future__ import annotations


class BtcpipeError(Exception):
    """Base of every error btcpipe raises on purpose."""


class ConfigError(BtcpipeError):
    """Configuration is missing, malformed or inconsistent."""


# --- bad input --------------------------------------------------------------------------------------
class DataError(BtcpipeError):
    """Input data is malformed or inconsistent."""


class MalformedRecordError(DataError):
    """A record (JSON message, CSV row, REST item) does not have the expected shape."""


class DecodeError(DataError):
    """An SBE frame could not be decoded."""


class TruncatedFrameError(DecodeError):
    """The frame ends before the fields its header and group dimensions announce."""


class SchemaIdError(DecodeError):
    """The frame's schema id is not the one this codec implements."""


class SchemaVersionError(DecodeError):
    """The frame's schema version is not supported."""


class UnknownTemplateError(DecodeError):
    """The frame's template id is not one of the known messages."""


class GroupOverrunError(TruncatedFrameError):
    """A repeating group's count and block length run past the end of the frame.

    A kind of truncation: from the bytes alone a frame cut inside a group and a group count that is
    too big cannot be told apart, so ``except TruncatedFrameError`` catches both.
    """


class MalformedFrameError(DecodeError):
    """A frame field holds what the schema forbids: a blockLength shorter than the schema's fields,
    a boolean other than 0/1, a symbol that is empty or not UTF-8."""


class ChecksumMismatchError(DataError):
    """A downloaded file's sha256 differs from its published checksum."""


class CorruptArchiveError(DataError):
    """A zip archive cannot be read or does not hold the expected member."""


# --- exchange / network -----------------------------------------------------------------------------
class ExchangeError(BtcpipeError):
    """A request to the exchange failed."""

    def __init__(self, message: str, *, status: int | None = None, request: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request = request


class RateLimitedError(ExchangeError):
    """HTTP 429 (rate limit) or 418 (IP ban); ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, status: int, retry_after: float, request: str | None = None) -> None:
        super().__init__(message, status=status, request=request)
        self.retry_after = retry_after


class RequestCancelledError(ExchangeError):
    """A request (or its wait for the weight window, Retry-After or a backoff) was given up because the
    process is stopping; nothing is known about its outcome."""


class ExchangeServerError(ExchangeError):
    """HTTP 5xx: the outcome is unknown; reads may be retried."""


class ExchangeRequestError(ExchangeError):
    """HTTP 4xx other than rate limits: the request itself is wrong (Binance ``code``/``msg`` kept)."""

    def __init__(
        self, message: str, *, status: int, code: int | None = None, request: str | None = None
    ) -> None:
        super().__init__(message, status=status, request=request)
        self.code = code


class MalformedResponseError(ExchangeError):
    """The exchange answered with a body that is not what the endpoint returns (truncated JSON, ...)."""


class StreamError(ExchangeError):
    """A WebSocket stream failed (refused handshake, closed, silent)."""


class AuthRefusedError(StreamError):
    """The SBE stream refused the API key (or no key was given)."""


# --- storage and transport --------------------------------------------------------------------------
class LakeError(BtcpipeError):
    """Reading or writing the lake failed."""


class LakeIntegrityError(LakeError):
    """The lake's content contradicts its manifest (hash, row count) or has unexpected gaps."""


class BusError(BtcpipeError):
    """Publishing to or consuming from the bus failed."""


class StoreError(BtcpipeError):
    """The online store failed."""


# --- model ------------------------------------------------------------------------------------------
class ModelError(BtcpipeError):
    """A model cannot be trained, exported, loaded or run."""


class ModelIntegrityError(ModelError):
    """A model artifact's sha256 differs from the manifest."""


class SchemaHashMismatchError(ModelError):
    """The model's feature schema hash differs from the running feature code's."""


class RegistryError(ModelError):
    """The model registry has no such model, version or alias."""


class PayloadDecodeError(DataError):
    """A bus or online-store payload is not a valid message (no header, corrupt Avro body)."""


class PayloadSchemaError(PayloadDecodeError):
    """A payload's schema fingerprint is unknown or is not the schema the reader expects."""


# --- orchestration ----------------------------------------------------------------------------------
class EngineError(BtcpipeError):
    """A partition runner could not run its tasks: the cluster is unreachable, or a worker was lost more
    often than the task's retries allow."""


class StageError(BtcpipeError):
    """A stage of ``btcpipe run`` failed; ``stage`` names it (exchange, backfill, check, features, ...)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"stage '{stage}' failed: {message}")
        self.stage = stage
