"""Kubernetes manifests: strict schema validation with kubernetes-validate (offline schemas, pinned version), and the
properties that matter: probes on /healthz and /readyz, requests and limits, non-root with the image's uid,
secrets by reference, a config file btcpipe's loader accepts, Services that select their Deployments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from support.deploy import cli_problems, grace_period_problem

from btcpipe.cli.wiring.config import load_config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # its schemas ship inside kubernetes-validate, so validation works offline
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
COMPONENTS = {"ingestor": "ingest", "processor": "process", "inference": "infer"}


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _resources() -> list[dict[str, Any]]:
    return [doc for path in _manifests() for doc in yaml.safe_load_all(path.read_text()) if doc]


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in _resources() if r["kind"] == kind}


def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_every_manifest_passes_strict_kubernetes_validation() -> None:
    result = _validate(*_manifests())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(_resources())


def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    broken = (K8S / "ingestor.yaml").read_text().replace("readinessProbe:", "readynessProbe:")
    (tmp_path / "broken.yaml").write_text(broken)
    assert _validate(tmp_path / "broken.yaml").returncode != 0


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _manifests())


def test_each_component_has_a_deployment_service_and_service_account() -> None:
    deployments, services, accounts = _of_kind("Deployment"), _of_kind("Service"), _of_kind("ServiceAccount")
    for component, command in COMPONENTS.items():
        name = f"btcpipe-{component}"
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][0] == command
        assert cli_problems(container["args"]) == [], name
        assert name in services
        assert name in accounts


def _pods() -> dict[str, dict[str, Any]]:
    return {name: d["spec"]["template"]["spec"] for name, d in _of_kind("Deployment").items()}


def test_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    # Liveness on /healthz (restart a stuck service), readiness on /readyz (its Redis/Kinesis answer).
    paths = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for name, pod in _pods().items():
        container = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in paths.items():
            check = container[probe]["httpGet"]
            assert check["path"] == path, (name, probe)
            assert check["port"] in ports, (name, probe)


def test_every_container_has_requests_and_limits() -> None:
    for name, pod in _pods().items():
        resources = pod["containers"][0]["resources"]
        for bound in ("requests", "limits"):
            assert set(resources[bound]) == {"cpu", "memory"}, (name, bound)


def test_pods_run_non_root_as_the_image_user_with_a_read_only_root() -> None:
    dockerfile_user = next(
        line.split()[1] for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines() if line.startswith("USER")
    )
    for name, pod in _pods().items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert f"{security['runAsUser']}:{security['runAsGroup']}" == dockerfile_user, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        container = pod["containers"][0]["securityContext"]
        assert container["allowPrivilegeEscalation"] is False, name
        assert container["readOnlyRootFilesystem"] is True, name
        assert container["capabilities"]["drop"] == ["ALL"], name
        assert pod["automountServiceAccountToken"] is False, name


def test_secrets_come_by_reference_into_the_variables_the_config_names(tmp_path: Path) -> None:
    config_text = _of_kind("ConfigMap")["btcpipe-config"]["data"]["config.toml"]
    config = load_config(_write(tmp_path, config_text), environ={})
    for name, pod in _pods().items():
        env = pod["containers"][0]["env"]
        secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
        assert all("value" not in e for e in env if e["name"] in secret_env)
        if name == "btcpipe-ingestor":
            assert secret_env[config.exchange.api_key_env]["name"] == "btcpipe-binance"
        else:
            assert secret_env[config.store.redis_password_env]["name"] == "btcpipe-redis"
    assert not _of_kind("Secret"), "Secrets are created out of band, never committed"


def _write(directory: Path, text: str) -> Path:
    path = directory / "config.toml"
    path.write_text(text)
    return path


def test_the_mounted_config_loads_and_matches_the_ports_and_mount(tmp_path: Path) -> None:
    configmap = _of_kind("ConfigMap")["btcpipe-config"]
    for name, pod in _pods().items():
        container = pod["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        volume = next(v for v in pod["volumes"] if v["name"] == "config")
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        assert env["BTCPIPE_CONFIG"] == f"{mount['mountPath']}/config.toml"
        config = load_config(_write(tmp_path, configmap["data"]["config.toml"]), environ=env)
        assert config.metrics.port == container["ports"][0]["containerPort"], name
        assert config.metrics.host == "0.0.0.0"  # probes come from the kubelet, not the pod's loopback
        annotations = _of_kind("Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(config.metrics.port)


def test_services_select_their_deployments_pods_and_named_ports() -> None:
    deployments = _of_kind("Deployment")
    for name, service in _of_kind("Service").items():
        template = deployments[name]["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert deployments[name]["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        port_names = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert all(p["targetPort"] in port_names for p in service["spec"]["ports"]), name


def test_the_processor_keeps_positions_on_a_writable_volume() -> None:
    pod = _pods()["btcpipe-processor"]
    container = pod["containers"][0]
    positions = container["args"][container["args"].index("--positions-dir") + 1]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == positions)
    assert mount.get("readOnly") is not True
    assert any(v["name"] == mount["name"] for v in pod["volumes"])


def test_single_writer_components_never_run_twice() -> None:
    for name, deployment in _of_kind("Deployment").items():
        assert deployment["spec"]["replicas"] == 1, name
        assert deployment["spec"]["strategy"]["type"] == "Recreate", name


def test_termination_grace_periods_outlast_btcpipes_bounded_stop(tmp_path: Path) -> None:
    configmap = _of_kind("ConfigMap")["btcpipe-config"]
    config = load_config(_write(tmp_path, configmap["data"]["config.toml"]), environ={})
    assert config.shutdown.grace_s == 5.0
    for name, pod in _pods().items():
        assert grace_period_problem(name, pod["terminationGracePeriodSeconds"], config.shutdown.grace_s) is None
    assert grace_period_problem("a pod with 8 s", 8, config.shutdown.grace_s) is not None  # the check can fail
