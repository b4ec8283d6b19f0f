"""Alertmanager: amtool accepts the configuration, every alert of the Prometheus rules file reaches the receivers its
severity and name call for, no secret is in the repository, and a real Alertmanager mutes symptoms while their cause
fires (inhibition cannot be checked offline by amtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from btcpipe.infra.devservers import LOOPBACK, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
SECRETS_DIR = "/etc/alertmanager/secrets"
# What each severity must reach (docs/OPERATIONS.md, "Alert routing"), independent of the routing tree's shape.
BY_SEVERITY = {"critical": ["pagerduty", "slack-oncall"], "warning": ["slack-alerts"], "info": ["slack-trends"]}
MODEL_ALERT = re.compile(r"BtcpipeModel.*|BtcpipeFeatureDrift")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make system-deps installs Debian's prometheus-alertmanager)")
    return path


def _alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def expected_receivers(rule: dict[str, Any]) -> list[str]:
    """Receivers an alert must reach, in the order Alertmanager visits them."""
    models = ["slack-models"] if MODEL_ALERT.fullmatch(rule["alert"]) else []
    return models + BY_SEVERITY[rule["labels"]["severity"]]


def _route(config: Path, labels: dict[str, str], receivers: list[str]) -> subprocess.CompletedProcess[str]:
    args = [f"{k}={v}" for k, v in labels.items()]
    return subprocess.run(
        [_tool("amtool"), "config", "routes", "test", f"--config.file={config}",
         f"--verify.receivers={','.join(receivers)}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_amtool_accepts_the_configuration() -> None:
    result = subprocess.run([_tool("amtool"), "check-config", str(CONFIG)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: r["alert"])
def test_every_alert_reaches_the_receivers_of_its_severity_and_name(rule: dict[str, Any]) -> None:
    labels = {"alertname": rule["alert"], **{k: str(v) for k, v in rule["labels"].items()}}
    result = _route(CONFIG, labels, expected_receivers(rule))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_route_test_fails_when_a_route_is_wrong() -> None:
    # The check above must be able to fail: a critical alert that only went to Slack is caught.
    result = _route(CONFIG, {"alertname": "BtcpipeFeatureStale", "severity": "critical"}, ["slack-oncall"])
    assert result.returncode != 0


def test_every_severity_the_rules_use_has_a_route() -> None:
    assert {r["labels"]["severity"] for r in _alerts()} <= set(BY_SEVERITY)


def test_no_secret_is_in_the_configuration_only_files_it_reads() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    text = CONFIG.read_text()
    assert "hooks.slack.com" not in text
    for inline in ("slack_api_url:", "routing_key:", "service_key:"):
        assert inline not in text, inline
    assert config["global"]["slack_api_url_file"].startswith(SECRETS_DIR)
    for receiver in config["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            assert pd["routing_key_file"].startswith(SECRETS_DIR)
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack  # the global file is the only Slack URL


def test_compose_runs_alertmanager_with_prometheus_sending_to_it() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    alertmanager = services["alertmanager"]
    # host:container[:ro], where the host side may be ${VAR:-default} (which has a colon of its own)
    mounts = {m.group(2): m.group(1) for v in alertmanager["volumes"] if (m := re.fullmatch(r"(.+):(/[^:]+)(:ro)?", v))}
    assert mounts["/etc/alertmanager/alertmanager.yml"] == "./alertmanager/alertmanager.yml"
    assert mounts[SECRETS_DIR] == "${BTCPIPE_ALERT_SECRETS:-./alertmanager/secrets.example}"
    placeholders = REPO / "deploy" / "alertmanager" / "secrets.example"
    assert sorted(p.name for p in placeholders.iterdir()) == ["pagerduty_routing_key", "slack_webhook_url"]
    assert "127.0.0.1" in (placeholders / "slack_webhook_url").read_text()  # points at nothing
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for am in prometheus["alerting"]["alertmanagers"] for sc in am["static_configs"]
               for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    assert services["prometheus"]["depends_on"]["alertmanager"]["condition"] == "service_healthy"


# --- a real Alertmanager ------------------------------------------------------------------------------------------


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _post(url: str, body: Any) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.fixture
def alertmanager(tmp_path: Path) -> Any:
    binary = _tool("prometheus-alertmanager")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # Notifications go to a closed loopback port: they fail (and are retried), nothing leaves the machine.
    (secrets / "slack_webhook_url").write_text(f"http://{LOOPBACK}:{free_port()}/slack\n")
    (secrets / "pagerduty_routing_key").write_text("test-routing-key\n")
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.read_text().replace(SECRETS_DIR, str(secrets)))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address={LOOPBACK}:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://{LOOPBACK}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, **labels}, "annotations": {"summary": name}}


def _states(url: str, names: set[str], timeout: float = 20.0) -> dict[str, dict[str, Any]]:
    """Status of each named alert once Alertmanager has evaluated inhibition for all of them."""
    deadline = time.monotonic() + timeout
    while True:
        got = {a["labels"]["alertname"]: a["status"] for a in _get(f"{url}/api/v2/alerts")}
        if names <= set(got) and all(got[n]["state"] != "unprocessed" for n in names):
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"alertmanager did not process {names}: {got}")
        time.sleep(0.1)


@pytest.mark.services
def test_silent_ingest_mutes_stale_features_and_skipped_ticks_but_not_itself(alertmanager: str) -> None:
    _post(f"{alertmanager}/api/v2/alerts", [
        _alert("BtcpipeIngestSilent", "critical", stream="trade"),
        _alert("BtcpipeFeatureStale", "critical", symbol="BTCUSDT"),
        _alert("BtcpipeSkippedTicks", "warning", symbol="BTCUSDT"),
        _alert("BtcpipeDecodeErrors", "warning", stream="trade"),
    ])
    states = _states(alertmanager, {"BtcpipeIngestSilent", "BtcpipeFeatureStale", "BtcpipeSkippedTicks",
                                    "BtcpipeDecodeErrors"})
    assert states["BtcpipeIngestSilent"]["state"] == "active"
    assert states["BtcpipeDecodeErrors"]["state"] == "active"  # not a symptom of silence
    for symptom in ("BtcpipeFeatureStale", "BtcpipeSkippedTicks"):
        assert states[symptom]["state"] == "suppressed", symptom
        assert states[symptom]["inhibitedBy"], symptom


@pytest.mark.services
def test_a_down_processor_mutes_its_own_alerts_not_inferences(alertmanager: str) -> None:
    _post(f"{alertmanager}/api/v2/alerts", [
        _alert("BtcpipeTargetDown", "critical", job="btcpipe-processor", instance="processor:9102"),
        _alert("BtcpipeConsumerLagHigh", "warning", stream="market-sbe-trade", consumer="processor"),
        _alert("BtcpipeInferenceLatencyHigh", "critical", symbol="BTCUSDT"),
    ])
    states = _states(alertmanager, {"BtcpipeTargetDown", "BtcpipeConsumerLagHigh", "BtcpipeInferenceLatencyHigh"})
    assert states["BtcpipeConsumerLagHigh"]["state"] == "suppressed"
    assert states["BtcpipeInferenceLatencyHigh"]["state"] == "active"
    assert states["BtcpipeTargetDown"]["state"] == "active"
