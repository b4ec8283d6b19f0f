"""The model inference serves: loaded from the registry, verified, and swapped when the alias moves.

Loading goes through ``OnnxPredictor``, which checks every artifact's sha256 against the manifest and
the model's schema hash against the running feature code. A model that fails either is refused
(``model_loads{outcome="refused"}``) and never served; at start-up that is fatal, later the current
model keeps serving. The served model is one immutable ``ServedModel`` held in one attribute, so a
swap is atomic: a tick sees the old model or the new one, never a mix of files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from btcpipe.domain.errors import BtcpipeError, ModelError
from btcpipe.domain.time import US_PER_SEC, Clock
from btcpipe.features.spec import FeatureParams, check_schema_document
from btcpipe.infra.metrics import Metrics
from btcpipe.model.artifacts import ModelArtifacts
from btcpipe.model.runtime import OnnxPredictor

log = logging.getLogger(__name__)


class ModelSource(Protocol):
    """What inference needs of the registry (``btcpipe.model.registry.ModelRegistry`` is one)."""

    def resolve(self, name: str, alias_or_version: str) -> str: ...

    def load(self, name: str, alias_or_version: str = ...) -> ModelArtifacts: ...


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The model being served: its version, runtime, schema hash and parameters."""

    name: str
    version: str
    predictor: OnnxPredictor
    params: FeatureParams  # the feature parameters the model was trained with (fallback engines use them)
    label_mid: str  # the mid its label used: "bbo_mid", "last_trade" (or "unknown"/"synthetic")
    data_last_ts: int | None  # µs, the newest training data the model has seen

    @property
    def uncertainty(self) -> float | None:
        return self.predictor.uncertainty


def _label_mid(manifest: Mapping[str, Any]) -> str:
    label = manifest.get("label")
    mid = label.get("mid") if isinstance(label, dict) else None
    return str(mid) if mid else "unknown"


def _data_last_ts(manifest: Mapping[str, Any]) -> int | None:
    data = manifest.get("data")
    last = data.get("last_ts") if isinstance(data, dict) else None
    return int(last) if isinstance(last, int) else None


def build_served_model(name: str, version: str, artifacts: ModelArtifacts) -> ServedModel:
    """Verify ``artifacts`` (hashes, schema hash, names) and open the ONNX session."""
    predictor = OnnxPredictor(artifacts)
    params = check_schema_document(artifacts.schema)  # names and hash vs the running feature code
    return ServedModel(name, version, predictor, params, _label_mid(artifacts.manifest),
                       _data_last_ts(artifacts.manifest))


class ModelWatcher:
    """Holds the served model and follows ``alias`` in the registry (see the module docstring)."""

    def __init__(
        self,
        registry: ModelSource,
        name: str,
        *,
        metrics: Metrics,
        clock: Clock,
        alias: str = "production",
        check_every_s: float = 5.0,
    ) -> None:
        if check_every_s <= 0:
            raise ModelError(f"the model check interval must be positive, got {check_every_s}")
        self.registry = registry
        self.name = name
        self.alias = alias
        self.metrics = metrics
        self.clock = clock
        self.check_every_us = int(check_every_s * US_PER_SEC)
        self._current: ServedModel | None = None
        self._next_check = 0
        self._refused: set[str] = set()
        self.swaps = 0

    @property
    def current(self) -> ServedModel:
        if self._current is None:
            raise ModelError("no model loaded yet: call load() first")
        return self._current

    def load(self) -> ServedModel:
        """Load what the alias points at now; raises (after counting the refusal) if it cannot be served."""
        version = self.registry.resolve(self.name, self.alias)
        model = self._load_version(version)
        if model is None:
            raise ModelError(f"model {self.name!r} {version} ({self.alias}) was refused; see the log")
        self._serve(model)
        self._next_check = self.clock.now_us() + self.check_every_us
        return model

    def poll(self) -> ServedModel | None:
        """When a check is due, follow the alias; returns the new model if it was swapped in."""
        now = self.clock.now_us()
        if now < self._next_check:
            return None
        self._next_check = now + self.check_every_us
        try:
            version = self.registry.resolve(self.name, self.alias)
        except BtcpipeError as exc:  # registry unreachable or alias gone: keep serving what we have
            log.warning("cannot read the model alias; keeping the served model",
                        extra={"model": self.name, "alias": self.alias, "error": str(exc)})
            return None
        if self._current is not None and version == self._current.version:
            return None
        if version in self._refused:
            return None
        model = self._load_version(version)
        if model is None:
            return None
        self._serve(model)
        return model

    def _load_version(self, version: str) -> ServedModel | None:
        try:
            artifacts = self.registry.load(self.name, version)
            model = build_served_model(self.name, version, artifacts)
        except BtcpipeError as exc:  # refused: hashes, schema hash, registry
            self._refused.add(version)
            self.metrics.model_loads.labels(outcome="refused").inc()
            log.error("refused to serve a model", extra={"model": self.name, "version": version,
                                                          "error_type": type(exc).__name__, "error": str(exc)})
            return None
        self.metrics.model_loads.labels(outcome="loaded").inc()
        return model

    def _serve(self, model: ServedModel) -> None:
        old = self._current
        self._current = model  # one reference assignment: the swap is atomic for readers
        if old is not None:
            self.swaps += 1
            self.metrics.model_info.remove(old.name, old.version)
        self.metrics.model_info.labels(name=model.name, version=model.version).set(1)
        if model.data_last_ts is not None:
            self.metrics.model_trained_timestamp.labels(name=model.name).set(model.data_last_ts / US_PER_SEC)
        log.info("serving model", extra={"model": model.name, "version": model.version,
                                         "previous": old.version if old else None, "label_mid": model.label_mid})
