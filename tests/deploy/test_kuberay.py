"""The KubeRay RayCluster (deploy/kuberay): validated statically, without a cluster or the CRD's schema.

kubernetes-validate knows only the built-in kinds, so the check has two halves:
- every pod template inside the RayCluster is lifted into a core ``v1/PodTemplate`` and validated strictly
  (misspelt or misplaced pod fields fail), as are the built-in kinds beside it (NetworkPolicy,
  ServiceAccount);
- the RayCluster's own fields are checked against a hand-written structural JSON schema of the ``ray.io/v1``
  fields used here (required keys, types, no unknown keys, rayStartParams values as strings).
And the properties that matter: rayVersion equals the ray pin, the image carries the ray extra, non-root
with a read-only root and a writable /tmp, requests = limits, the head runs no tasks, the token from a Secret.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "deploy" / "kuberay"
KUBERNETES_VERSION = "1.33.0"
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"metadata": {"type": "object"},
                                                                     "spec": {"type": "object"}},
             "additionalProperties": False}
# The ray.io/v1 RayCluster fields this manifest uses, as KubeRay's CRD types them.
RAYCLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "additionalProperties": False,
            "properties": {
                "rayVersion": {"type": "string"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "headGroupSpec": {
                    "type": "object",
                    "required": ["template"],
                    "additionalProperties": False,
                    "properties": {"serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                                   "rayStartParams": _STRING_MAP, "template": _TEMPLATE},
                },
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["groupName", "template"],
                        "additionalProperties": False,
                        "properties": {"groupName": {"type": "string"}, "replicas": {"type": "integer", "minimum": 0},
                                       "minReplicas": {"type": "integer", "minimum": 0},
                                       "maxReplicas": {"type": "integer", "minimum": 1},
                                       "rayStartParams": _STRING_MAP, "template": _TEMPLATE},
                    },
                },
            },
        },
    },
}


def _docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _cluster() -> dict[str, Any]:
    (cluster,) = [d for d in _docs() if d["kind"] == "RayCluster"]
    return cluster


def _groups(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = cluster["spec"]
    return [("head", spec["headGroupSpec"]), *((g["groupName"], g) for g in spec["workerGroupSpecs"])]


def _validate(tmp_path: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return subprocess.run([str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


def _as_pod_templates(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"btcpipe-ray-{name}"},
             "template": group["template"]} for name, group in _groups(cluster)]


def test_pod_templates_and_builtin_kinds_pass_strict_kubernetes_validation(tmp_path: Path) -> None:
    builtin = [d for d in _docs() if d["kind"] != "RayCluster"]
    docs = [*builtin, *_as_pod_templates(_cluster())]
    result = _validate(tmp_path, docs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(docs) == len(builtin) + 2


def test_a_misspelt_pod_field_inside_the_raycluster_is_caught(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resource"] = {}
    assert _validate(tmp_path, _as_pod_templates(cluster)).returncode != 0


def test_raycluster_fields_fit_the_kuberay_structure() -> None:
    jsonschema.validate(_cluster(), RAYCLUSTER_SCHEMA)
    broken = _cluster()
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # KubeRay wants strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RAYCLUSTER_SCHEMA)
    broken = _cluster()
    broken["spec"]["workerGroupSpecs"][0]["replica"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RAYCLUSTER_SCHEMA)


def test_ray_version_and_image_match_the_ray_extra() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (pin,) = pyproject["project"]["optional-dependencies"]["ray"]
    assert pin == f"ray=={_cluster()['spec']['rayVersion']}"
    for _, group in _groups(_cluster()):
        assert group["template"]["spec"]["containers"][0]["image"].startswith("btcpipe-ray:")
    assert "EXTRAS" in (REPO / "deploy" / "Dockerfile").read_text()


def test_nodes_run_non_root_read_only_with_writable_tmp_bounded_resources_and_the_token_secret() -> None:
    for name, group in _groups(_cluster()):
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsUser"] == 10001, name
        assert container["securityContext"]["readOnlyRootFilesystem"], name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, name
        assert mounts["/tmp"] in {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        assert container["resources"]["requests"] == container["resources"]["limits"], name
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "btcpipe-ray-token"
    assert _cluster()["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_kustomization_lists_every_manifest_and_the_network_policy_selects_the_cluster() -> None:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in KUBERAY.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    (policy,) = [d for d in _docs() if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": _cluster()["metadata"]["name"]}
