"""The model registry over an ``ObjectStore``: register, list, promote, rollback, load with verification.

Store-generic: ``tests/integration/test_model_registry_s3.py`` runs every test here again on S3.
The registry checks hashes, not graphs, so the artifacts here carry small stand-in ONNX bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from btcpipe.domain.errors import ModelIntegrityError, RegistryError
from btcpipe.features.spec import FeatureParams
from btcpipe.lake.objects import LocalObjectStore, ObjectStore
from btcpipe.model.artifacts import MODEL_FILE, ModelArtifacts, assemble
from btcpipe.model.registry import ModelRegistry
from btcpipe.model.schema import schema_json


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "lake")


@pytest.fixture
def registry(store: ObjectStore) -> ModelRegistry:
    return ModelRegistry(store)


def _artifacts(tag: str) -> ModelArtifacts:
    return assemble(
        model_onnx=f"onnx graph {tag}".encode(),
        scaler_json=b'{"format": "btcpipe.standard_scaler/1"}',
        schema_json=schema_json(FeatureParams(0.25)),
        info={"tag": tag},
    )


def test_register_numbers_versions_and_list_shows_them_in_order(registry: ModelRegistry) -> None:
    assert registry.versions("btc") == []
    assert [registry.register("btc", _artifacts(t)) for t in "abc"] == ["v1", "v2", "v3"]
    listed = registry.list("btc")
    assert [(m.version, m.manifest["tag"], m.is_production) for m in listed] == [
        ("v1", "a", False), ("v2", "b", False), ("v3", "c", False),
    ]
    assert registry.list("other") == []


def test_register_writes_models_name_version_layout(registry: ModelRegistry, store: ObjectStore) -> None:
    registry.register("btc", _artifacts("a"))
    assert store.list("models/btc/v1/") == [
        "models/btc/v1/manifest.json", "models/btc/v1/model.onnx", "models/btc/v1/scaler.json",
        "models/btc/v1/schema_v1.json",
    ]


def test_promote_and_rollback_move_the_production_alias_and_keep_history(registry: ModelRegistry) -> None:
    for t in "abc":
        registry.register("btc", _artifacts(t))
    assert registry.production_version("btc") is None
    registry.promote("btc", "v1", at_us=1)
    registry.promote("btc", "v3", at_us=2)
    assert registry.production_version("btc") == "v3"
    assert registry.load("btc").manifest["tag"] == "c"
    assert [m.is_production for m in registry.list("btc")] == [False, False, True]
    assert registry.rollback("btc", at_us=3) == "v1"
    assert registry.production_version("btc") == "v1"
    assert registry.load("btc", "production").manifest["tag"] == "a"
    assert [(h["action"], h["version"]) for h in registry.history("btc")] == [
        ("promote", "v1"), ("promote", "v3"), ("rollback", "v1"),
    ]
    with pytest.raises(RegistryError, match="no earlier production version"):
        registry.rollback("btc")


def test_promoting_the_current_version_again_changes_nothing(registry: ModelRegistry) -> None:
    registry.register("btc", _artifacts("a"))
    registry.promote("btc", "v1")
    registry.promote("btc", "v1")
    assert len(registry.history("btc")) == 1


def test_load_by_version_latest_and_unknown_names(registry: ModelRegistry) -> None:
    registry.register("btc", _artifacts("a"))
    registry.register("btc", _artifacts("b"))
    assert registry.load("btc", "v1").manifest["tag"] == "a"
    assert registry.load("btc", "latest").manifest["tag"] == "b"
    with pytest.raises(RegistryError, match="no version v9"):
        registry.load("btc", "v9")
    with pytest.raises(RegistryError, match="production"):
        registry.load("btc", "production")
    with pytest.raises(RegistryError, match="invalid model name"):
        registry.versions("../etc")
    with pytest.raises(RegistryError, match="no version"):
        registry.promote("btc", "v7")


def test_a_tampered_stored_artifact_is_refused_on_load_and_promote(registry: ModelRegistry, store: ObjectStore) -> None:
    registry.register("btc", _artifacts("a"))
    store.put("models/btc/v1/model.onnx", b"onnx graph A")
    with pytest.raises(ModelIntegrityError, match=MODEL_FILE):
        registry.load("btc", "v1")
    with pytest.raises(ModelIntegrityError):
        registry.promote("btc", "v1")
    assert registry.production_version("btc") is None


def test_a_version_without_its_manifest_is_invisible(registry: ModelRegistry, store: ObjectStore) -> None:
    registry.register("btc", _artifacts("a"))
    store.put("models/btc/v2/model.onnx", b"a crash before the manifest was written")
    assert registry.versions("btc") == ["v1"]
    assert registry.register("btc", _artifacts("b")) == "v2"
    assert registry.load("btc", "v2").manifest["tag"] == "b"


def test_register_refuses_inconsistent_artifacts(registry: ModelRegistry) -> None:
    good = _artifacts("a")
    bad = ModelArtifacts.from_files({**good.files, MODEL_FILE: b"different bytes"})
    with pytest.raises(ModelIntegrityError):
        registry.register("btc", bad)
    assert registry.versions("btc") == []


def test_corrupt_alias_file_gives_a_clear_error(registry: ModelRegistry, store: ObjectStore) -> None:
    registry.register("btc", _artifacts("a"))
    store.put("models/btc/aliases/production.json", b"{not json")
    with pytest.raises(RegistryError, match="not JSON"):
        registry.production_version("btc")
    assert registry.load("btc", "v1").manifest["tag"] == "a"  # the versions themselves are untouched


@pytest.mark.parametrize("target", ["../other-model/v1", "v1/../../x", "latest", "v0", "v1\n", 7, "aliases"])
def test_an_alias_may_only_point_at_a_version_folder(
    registry: ModelRegistry, store: ObjectStore, target: object
) -> None:
    import json

    store.put("models/m/aliases/production.json", json.dumps({"version": target, "stack": [target]}).encode())
    with pytest.raises(RegistryError, match="not a version"):
        registry.resolve("m", "production")
    with pytest.raises(RegistryError, match="not a version"):
        registry.production_version("m")


@pytest.mark.parametrize("bad", ["m\n", "v1\n", "../m", "m/x"])
def test_names_versions_and_aliases_with_a_trailing_newline_or_a_path_are_refused(
    registry: ModelRegistry, bad: str
) -> None:
    with pytest.raises(RegistryError):
        registry.resolve(bad, "production")
    with pytest.raises(RegistryError):
        registry.resolve("m", bad)
