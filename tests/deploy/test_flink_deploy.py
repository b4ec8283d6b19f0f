"""Flink deployments, checked statically: the FlinkDeployment (deploy/flink) and Managed Flink (Terraform).

kubernetes-validate knows only built-in kinds, so the FlinkDeployment's pod template is lifted into a core
``v1/PodTemplate`` and validated strictly, and its own fields are checked against a hand-written structural
schema of the ``flink.apache.org/v1beta1`` fields used here. The job's arguments must parse with the job's
own command line. The Managed Flink application reads only the market streams and writes only features-1s.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import jsonschema
import pytest
import yaml

from btcpipe.engines.flink.options import parse_args

REPO = Path(__file__).resolve().parents[2]
FLINK = REPO / "deploy" / "flink"
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_RESOURCE = {"type": "object", "required": ["memory", "cpu"], "additionalProperties": False,
             "properties": {"memory": {"type": "string"}, "cpu": {"type": "number", "exclusiveMinimum": 0}}}
FLINKDEPLOYMENT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "flink.apache.org/v1beta1"}, "kind": {"const": "FlinkDeployment"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "additionalProperties": False,
            "required": ["image", "flinkVersion", "serviceAccount", "jobManager", "taskManager", "job"],
            "properties": {
                "image": {"type": "string"}, "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                "flinkVersion": {"pattern": "^v[12]_[0-9]+$"}, "serviceAccount": {"type": "string"},
                "flinkConfiguration": _STRING_MAP, "podTemplate": {"type": "object"},
                "jobManager": {"type": "object", "additionalProperties": False, "required": ["resource"],
                               "properties": {"replicas": {"type": "integer", "minimum": 1}, "resource": _RESOURCE}},
                "taskManager": {"type": "object", "additionalProperties": False, "required": ["resource"],
                                "properties": {"replicas": {"type": "integer", "minimum": 1}, "resource": _RESOURCE}},
                "job": {"type": "object", "additionalProperties": False, "required": ["jarURI", "upgradeMode"],
                        "properties": {"jarURI": {"type": "string"}, "entryClass": {"type": "string"},
                                       "args": {"type": "array", "items": {"type": "string"}},
                                       "parallelism": {"type": "integer", "minimum": 1},
                                       "upgradeMode": {"enum": ["stateless", "savepoint", "last-state"]},
                                       "state": {"enum": ["running", "suspended"]}}},
            },
        },
    },
}


def _deployment() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((FLINK / "flinkdeployment.yaml").read_text()) if d]
    return doc


def _pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    template = doc["spec"]["podTemplate"]
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "btcpipe-flink"},
            "template": {"metadata": template.get("metadata", {}), "spec": template["spec"]}}


def _validate(tmp_path: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return subprocess.run([str(KUBERNETES_VALIDATE), "--strict", "-k", "1.33.0", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_flinkdeployment_fits_the_operator_structure_and_a_misplaced_field_is_caught() -> None:
    jsonschema.validate(_deployment(), FLINKDEPLOYMENT_SCHEMA)
    broken = _deployment()
    broken["spec"]["job"]["upgradeMode"] = "savepoints"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, FLINKDEPLOYMENT_SCHEMA)


def test_pod_template_passes_strict_kubernetes_validation_and_a_misspelt_field_fails(tmp_path: Path) -> None:
    result = _validate(tmp_path, [_pod_template(_deployment())])
    assert result.returncode == 0, result.stdout + result.stderr
    broken = _deployment()
    broken["spec"]["podTemplate"]["spec"]["containers"][0]["volumeMount"] = []
    assert _validate(tmp_path, [_pod_template(broken)]).returncode != 0


def test_the_job_runs_btcpipes_flink_job_with_arguments_it_accepts_and_upgrades_by_savepoint() -> None:
    job = _deployment()["spec"]["job"]
    args = job["args"]
    assert args[:2] == ["-pym", "btcpipe.engines.flink.job"]
    parsed = parse_args(args[2:])
    assert parsed.follow
    assert parsed.parallelism == job["parallelism"]
    assert parsed.checkpoint_ms > 0
    assert job["upgradeMode"] == "savepoint"
    pod = _deployment()["spec"]["podTemplate"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


def test_managed_flink_reads_the_market_streams_writes_features_and_snapshots() -> None:
    with (REPO / "deploy" / "terraform" / "flink.tf").open() as handle:
        tf = hcl2.load(handle)
    text = (REPO / "deploy" / "terraform" / "flink.tf").read_text()
    apps = [r for r in tf["resource"] if any("aws_kinesisanalyticsv2_application" in k for k in r)]
    assert len(apps) == 1
    assert "local.market_streams" in text
    assert 'aws_kinesis_stream.bus["features-1s"].arn' in text
    assert "snapshots_enabled = true" in text
    assert "checkpointing_enabled         = true" in text
    assert 'count                  = var.flink_enabled ? 1 : 0' in text
    kustomization = yaml.safe_load((FLINK / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["flinkdeployment.yaml"]
