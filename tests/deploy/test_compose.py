"""The Dockerfile and the compose stack, validated statically (no Docker engine here): compose's own parser and the
compose-spec schema, configuration that btcpipe's loader accepts, commands the CLI has, healthchecks everywhere,
host ports on loopback only, scrape targets that match the services; a multi-stage, non-root image with a
HEALTHCHECK and no build tools in its runtime stage."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.deploy import cli_problems, grace_period_problem

from btcpipe.cli.wiring.config import load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
BTCPIPE_IMAGE = "btcpipe:local"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def _btcpipe_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _compose()["services"].items() if s.get("image") == BTCPIPE_IMAGE}


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def dockerfile_stages(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(stage name, [(INSTRUCTION, arguments)]) per FROM, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            name = args.split(" AS ")[-1].strip() if " AS " in args else str(len(stages))
            stages.append((name, []))
        elif stages:
            stages[-1][1].append((instruction, args.strip()))
    return stages


# --- compose ----------------------------------------------------------------------------------------------------


def test_docker_compose_accepts_the_file() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (make system-deps installs it)")
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_every_part_issue_6_lists() -> None:
    services = _compose()["services"]
    commands = {name: s.get("command", [])[:1] for name, s in _btcpipe_services().items()}
    assert {"redis", "moto", "prometheus", "grafana"} <= set(services)
    assert {"exchange": ["exchange"], "ingestor": ["ingest"], "processor": ["process"], "inference": ["infer"]}.items(
    ) <= commands.items()




def test_btcpipe_services_run_commands_the_cli_has() -> None:
    for name, service in _btcpipe_services().items():
        if service.get("entrypoint"):
            continue  # a one-shot with its own entrypoint (lake-init)
        assert cli_problems(service["command"]) == [], name


def test_the_command_check_catches_unknown_options_and_commands() -> None:
    assert cli_problems(["process", "--positions-dir", "/x"]) == []
    assert cli_problems(["process", "--position-dir", "/x"]) == ["process has no option --position-dir"]
    assert cli_problems(["exchange", "serve", "--port", "1"]) == []
    assert cli_problems(["exchange", "srve"]) == ["unknown sub-command in ['exchange', 'srve']"]
    assert cli_problems(["ingestt"]) == ["unknown command ['ingestt']"]


def test_every_service_configuration_loads_with_btcpipes_config_loader() -> None:
    for name, service in _btcpipe_services().items():
        env = _env(service)
        config = load_config(environ=env)
        if "BTCPIPE__METRICS__PORT" in env:
            assert config.metrics.port == int(env["BTCPIPE__METRICS__PORT"]), name
        assert config.bus.kind == "kinesis"
        assert config.store.kind == "redis"
        assert config.lake.uri.startswith("s3://")


def test_a_typo_in_a_compose_variable_would_be_caught() -> None:
    env = _env(_btcpipe_services()["processor"]) | {"BTCPIPE__BUS__KINESIS_ENDPIONT": "http://moto:5000"}
    with pytest.raises(Exception, match="unknown keys"):
        load_config(environ=env)


def test_every_long_running_service_has_a_healthcheck() -> None:
    image_has_healthcheck = any(i == "HEALTHCHECK" for _, body in dockerfile_stages(DOCKERFILE.read_text())[-1:]
                                for i, _ in body)
    for name, service in _compose()["services"].items():
        if service.get("restart") == "no":
            continue
        own = "healthcheck" in service
        assert own or (service.get("image") == BTCPIPE_IMAGE and image_has_healthcheck), name


def test_published_ports_bind_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_services_start_after_what_they_need_is_healthy() -> None:
    services = _compose()["services"]
    assert services["ingestor"]["network_mode"] == "service:exchange"
    assert services["ingestor"]["depends_on"]["exchange"]["condition"] == "service_healthy"
    # A Kinesis bus keeps the processor's positions in files: they must be on a volume, not the read-only root.
    positions = services["processor"]["command"][services["processor"]["command"].index("--positions-dir") + 1]
    assert any(v.endswith(f":{positions}") for v in services["processor"]["volumes"])
    for name in ("ingestor", "processor"):
        assert services[name]["depends_on"]["lake-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_prometheus_scrapes_each_service_where_its_metrics_listen() -> None:
    compose = _compose()["services"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounted = {v.split(":")[1] for v in compose["prometheus"]["volumes"]}
    assert "/etc/prometheus/alerts.yml" in mounted
    jobs = {j["job_name"]: t for j in prometheus["scrape_configs"] for t in j["static_configs"][0]["targets"]}
    for job, service in (("btcpipe-ingestor", "ingestor"), ("btcpipe-processor", "processor"),
                         ("btcpipe-inference", "inference")):
        host, port = jobs[job].split(":")
        network_owner = compose[service].get("network_mode", f"service:{service}").removeprefix("service:")
        assert host == network_owner, job
        assert port == str(compose[service]["environment"]["BTCPIPE__METRICS__PORT"]), job


# --- Dockerfile ---------------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_the_runtime_copies_only_the_built_venv() -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text())
    assert [name for name, _ in stages] == ["builder", "runtime"]
    runtime = stages[-1][1]
    copies = [args for i, args in runtime if i == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_builder_installs_with_the_pinned_constraints() -> None:
    runs = [args for i, args in dockerfile_stages(DOCKERFILE.read_text())[0][1] if i == "RUN"]
    pip_calls = [c.strip() for r in runs for c in r.split("&&") if re.search(r"pip (wheel|install) ", c)]
    assert len(pip_calls) >= 2, runs
    for call in pip_calls:
        assert "-c constraints.txt" in call, call


def test_runtime_runs_as_a_non_root_user_without_build_tools() -> None:
    runtime = dockerfile_stages(DOCKERFILE.read_text())[-1][1]
    users = [args for i, args in runtime if i == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid not in {"0", "root"}
    assert uid.isdigit()  # numeric, so Kubernetes' runAsNonRoot can verify it
    text = " ".join(args for _, args in runtime)
    for tool in ("build-essential", "gcc", "apt-get install", "pip install"):
        assert tool not in text, tool


def test_runtime_has_a_healthcheck_on_healthz_and_btcpipe_as_entrypoint() -> None:
    runtime = dict(dockerfile_stages(DOCKERFILE.read_text())[-1][1])
    assert "/healthz" in runtime["HEALTHCHECK"]
    assert "BTCPIPE__METRICS__PORT" in runtime["HEALTHCHECK"]
    assert runtime["ENTRYPOINT"] == '["btcpipe"]'
    assert "BTCPIPE__METRICS__PORT=9100" in runtime["ENV"]


def test_everything_the_dockerfile_copies_exists_and_survives_the_dockerignore() -> None:
    builder = dockerfile_stages(DOCKERFILE.read_text())[0][1]
    sources = [s for i, args in builder if i == "COPY" for s in shlex.split(args)[:-1]]
    kept = {line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
            if line.startswith("!")}
    for source in sources:
        assert (REPO / source).exists(), source
        assert source.rstrip("/") in kept, source


def test_the_parser_sees_a_root_runtime() -> None:
    stages = dockerfile_stages("FROM a AS builder\nRUN x \\\n  y\nFROM b AS runtime\nUSER root\n")
    assert stages == [("builder", [("RUN", "x    y")]), ("runtime", [("USER", "root")])]


def _seconds(duration: str) -> float:
    """Compose durations: ``30s``, ``1m30s``, ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_stop_grace_periods_outlast_btcpipes_bounded_stop() -> None:
    for name, service in _btcpipe_services().items():
        if service.get("restart") == "no":
            continue  # one-shot jobs are not stopped
        grace = load_config(environ=_env(service)).shutdown.grace_s
        period = _seconds(service.get("stop_grace_period", "10s"))  # compose's default
        assert grace_period_problem(name, period, grace) is None
    assert _seconds("1m30s") == 90.0
