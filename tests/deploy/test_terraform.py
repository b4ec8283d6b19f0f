"""Terraform for AWS, checked statically: every file parses with python-hcl2, the resources have the properties the
design needs (streams of the plan, encrypted Redis with its token from a secret, a versioned lake with lifecycle
rules, one Fargate service per component, least-privilege task roles, alarms that mirror the Prometheus alerts on
metrics btcpipe's EMF output really emits), and checkov finds nothing that is not fixed or justified inline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from support.deploy import cli_problems, grace_period_problem

from btcpipe.bus.port import ALL_STREAMS
from btcpipe.cli.wiring.config import load_config
from btcpipe.infra.emf import KEY_METRICS, EmfSettings
from btcpipe.services.ingest.bronze import _KIND_OF as _KIND_OF_INGESTOR

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "deploy" / "terraform"
CHECKOV_VENV = REPO / ".venv-checkov"
CHECKOV_VERSION = "3.3.30"
COMPONENTS = {"ingestor": "ingest", "processor": "process", "inference": "infer"}
MARKET_STREAMS = ["market-sbe-trade", "market-sbe-bestbidask", "market-sbe-depth", "market-heartbeat"]


def _plain(value: Any) -> Any:
    """hcl2 keeps HCL string quotes and block markers; strip both so values compare as plain data."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def _parsed() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            out[path.name] = _plain(hcl2.load(handle))
    return out


def _blocks(kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, name) -> body of every resource (kind="resource") or data source (kind="data")."""
    out = {}
    for doc in _parsed().values():
        for entry in doc.get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    out[(rtype, name)] = body
    return out


def _locals() -> dict[str, Any]:
    return {k: v for doc in _parsed().values() for entry in doc.get("locals", []) for k, v in entry.items()}


def _resource(rtype: str, name: str) -> dict[str, Any]:
    return _blocks("resource")[(rtype, name)]


def test_every_terraform_file_parses() -> None:
    names = {p.name for p in TERRAFORM.glob("*.tf")}
    assert {"kinesis.tf", "elasticache.tf", "s3.tf", "ecs.tf", "iam.tf", "cloudwatch.tf"} <= names
    assert set(_parsed()) == names


def test_hcl2_rejects_broken_terraform(tmp_path: Path) -> None:
    (tmp_path / "broken.tf").write_text('resource "aws_s3_bucket" "x" {\n  bucket = "a"\n')
    with (tmp_path / "broken.tf").open() as handle, pytest.raises(Exception):  # noqa: B017, PT011 - any parse error
        hcl2.load(handle)


def test_the_kinesis_streams_of_the_plan_are_encrypted() -> None:
    assert sorted(_locals()["streams"].removeprefix("${toset(").removesuffix(")}").strip("[]").replace('"', "")
                  .replace(" ", "").split(",")) == sorted(ALL_STREAMS)
    stream = _resource("aws_kinesis_stream", "bus")
    assert stream["for_each"] == "${local.streams}"
    assert stream["encryption_type"] == "KMS"
    assert stream["kms_key_id"] == "${aws_kms_key.btcpipe.arn}"
    assert _locals()["market_streams"] == MARKET_STREAMS


def test_redis_encrypts_in_transit_and_at_rest_with_its_token_from_a_secret() -> None:
    redis = _resource("aws_elasticache_replication_group", "redis")
    assert redis["transit_encryption_enabled"] is True
    assert redis["at_rest_encryption_enabled"] is True
    assert redis["kms_key_id"] == "${aws_kms_key.btcpipe.arn}"
    assert redis["auth_token"] == "${aws_secretsmanager_secret_version.redis_auth.secret_string}"
    assert redis["automatic_failover_enabled"] is True
    secret = _resource("aws_secretsmanager_secret_version", "redis_auth")
    assert secret["secret_id"] == "${aws_secretsmanager_secret.redis_auth.id}"
    ingress = _resource("aws_vpc_security_group_ingress_rule", "redis_from_tasks")
    assert ingress["referenced_security_group_id"] == "${aws_security_group.tasks.id}"
    assert "cidr_ipv4" not in ingress


def test_the_lake_is_versioned_private_encrypted_and_tiered() -> None:
    versioning = _resource("aws_s3_bucket_versioning", "lake")
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    public = _resource("aws_s3_bucket_public_access_block", "lake")
    assert all(public[k] is True for k in
               ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    sse = _resource("aws_s3_bucket_server_side_encryption_configuration", "lake")
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    rules = {r["filter"][0].get("prefix", ""): r for r in _resource("aws_s3_bucket_lifecycle_configuration", "lake")
             ["rule"]}
    assert [t["storage_class"] for t in rules["bronze/"]["transition"]] == ["STANDARD_IA", "GLACIER"]
    assert rules["tmp/"]["expiration"][0]["days"] == 1
    assert rules[""]["abort_incomplete_multipart_upload"][0]["days_after_initiation"] > 0


def test_one_fargate_service_per_component_running_its_command_as_non_root() -> None:
    components = _locals()["components"]
    assert {name: c["command"].split()[0] for name, c in components.items()} == COMPONENTS
    assert all(cli_problems(c["command"].split()) == [] for c in components.values())
    service = _resource("aws_ecs_service", "service")
    assert service["for_each"] == "${local.components}"
    assert service["launch_type"] == "FARGATE"
    assert service["network_configuration"][0]["assign_public_ip"] is False
    assert service["deployment_maximum_percent"] == 100  # one writer at a time
    task = _resource("aws_ecs_task_definition", "service")
    assert task["requires_compatibilities"] == ["FARGATE"]
    containers = task["container_definitions"]
    dockerfile_user = re.search(r"^USER (\S+)$", (REPO / "deploy" / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None
    for fragment in (f'user = "{dockerfile_user.group(1)}"', "readonlyRootFilesystem = true", "privileged = false",
                     'command = split(" ", each.value.command)', "/healthz", 'logDriver = "awslogs"', 'drop = ["ALL"]'):
        assert fragment in containers, fragment
    assert components["ingestor"]["secrets"] == {"BTCPIPE_BINANCE_API_KEY": "${var.binance_api_key_secret_arn}"}


def test_ecs_stop_timeout_outlasts_btcpipes_bounded_stop() -> None:
    containers = _resource("aws_ecs_task_definition", "service")["container_definitions"]
    match = re.search(r"stopTimeout\s*=\s*(\d+)", containers)
    assert match is not None, "without stopTimeout ECS sends SIGKILL after its default 30 s"
    grace = load_config(environ={k: str(v) for k, v in _locals()["environment"].items()}).shutdown.grace_s
    assert grace_period_problem("ECS stopTimeout", int(match.group(1)), grace) is None
    assert int(match.group(1)) <= 120  # Fargate's maximum


def test_task_environment_is_configuration_btcpipe_accepts_and_enables_emf() -> None:
    environment = {k: str(v) for k, v in _locals()["environment"].items()}
    config = load_config(environ=environment)
    assert config.bus.kind == "kinesis"
    assert config.store.kind == "redis"
    assert config.store.tls is True
    assert config.exchange.kind == "binance"
    assert config.lake.uri.startswith("s3://")
    assert config.store.redis_password_env in _locals()["components"]["processor"]["secrets"]
    assert config.exchange.api_key_env in _locals()["components"]["ingestor"]["secrets"]
    emf = EmfSettings.from_env({**environment, "BTCPIPE_EMF_NAMESPACE": _locals()["emf_namespace"]})
    assert emf.enabled
    assert environment["BTCPIPE_EMF_NAMESPACE"] == "${local.emf_namespace}"


def test_task_roles_reach_only_their_own_streams_and_prefixes() -> None:
    access = _locals()["task_access"]
    market = "${local.market_streams}"
    assert access["ingestor"]["put_streams"] == market
    assert access["ingestor"]["read_streams"] == []
    assert access["processor"]["read_streams"] == market
    assert access["processor"]["put_streams"] == ["features-1s", "dead-letters"]
    assert access["inference"]["put_streams"] == ["predictions-1s"]
    assert access["inference"]["read_streams"] == [  # its fallback, and the rows it predicts on arrival
        "market-sbe-trade", "market-sbe-bestbidask", "market-heartbeat", "features-1s"]
    assert access["processor"]["write_prefix"] == ["silver/features_1s_live/"]
    assert "models/" in access["inference"]["read_prefix"]
    assert "models/" not in access["ingestor"]["write_prefix"]  # only training promotes models
    policies = [body for (t, _), body in _blocks("data").items() if t == "aws_iam_policy_document"]
    text = json.dumps(_blocks("data")[("aws_iam_policy_document", "task")])
    assert "each.value.put_streams" in text
    assert "each.value.read_streams" in text
    for policy in policies:
        statements = policy.get("statement", []) + [
            c for d in policy.get("dynamic", []) for s in d.values() for c in s["content"]
        ]
        for statement in statements:
            if statement.get("effect") == "Deny" or statement.get("sid") in {
                    "AccountAdministers", "CloudWatchLogsEncrypt", "CloudWatchAlarmsToEncryptedTopics"}:
                continue  # the TLS-only bucket policy, and the KMS key policy (scoped to its key by definition)
            assert all(not a.endswith(":*") and a != "*" for a in statement["actions"]), statement
            if statement["actions"] != ["sts:AssumeRole"]:  # trust policies name principals, not resources
                assert statement["resources"] not in (["*"], "*"), statement


def test_alarms_mirror_the_key_alerts_on_metrics_emf_emits() -> None:
    emf_units = {m.name: m.unit for m in KEY_METRICS}
    alerts = {r["alert"] for g in yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())["groups"]
              for r in g["rules"]}
    alarms = _locals()["alarms"]
    for name, alarm in alarms.items():
        assert alarm["metric"] in emf_units, name
        assert alarm["alert"] in alerts, name
        assert alarm["service"] in COMPONENTS, name
    by_alert = {a["alert"]: a for a in alarms.values()}
    for key in ("BtcpipeFeatureStale", "BtcpipeInferenceLatencyHigh", "BtcpipeOnlineStoreMissRate",
                "BtcpipeConsumerLagHigh", "BtcpipeDecodeErrors", "BtcpipeResyncStorm", "BtcpipeModelStale",
                "BtcpipeIngestSilent"):
        assert key in by_alert, key
    # Thresholds in the units EMF reports: 100 ms, 5 %, 3 s, 7 days.
    assert (by_alert["BtcpipeInferenceLatencyHigh"]["threshold"], emf_units["InferenceLatencyP95"]) == (
        100, "Milliseconds")
    assert (by_alert["BtcpipeOnlineStoreMissRate"]["threshold"], emf_units["StoreMissRate"]) == (5, "Percent")
    assert (by_alert["BtcpipeFeatureStale"]["threshold"], emf_units["FeatureAge"]) == (3, "Seconds")
    assert by_alert["BtcpipeModelStale"]["threshold"] == 7 * 86400
    skipped = _resource("aws_cloudwatch_metric_alarm", "skipped_ticks")
    metrics = {q["metric"][0]["metric_name"] for q in skipped["metric_query"] if "metric" in q}
    assert metrics == {"SkippedTicks", "InferenceTicks"} <= set(emf_units)
    generic = _resource("aws_cloudwatch_metric_alarm", "btcpipe")
    assert generic["namespace"] == "${local.emf_namespace}"
    assert generic["dimensions"] == {"Service": "${each.value.service}"}


def _rule_severities() -> dict[str, str]:
    doc = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    return {r["alert"]: r["labels"]["severity"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_each_alarm_notifies_the_encrypted_topic_of_its_prometheus_twins_severity() -> None:
    topics = _resource("aws_sns_topic", "alerts")
    assert topics["for_each"] == "${local.severities}"
    assert topics["kms_master_key_id"] == "${aws_kms_key.btcpipe.arn}"
    assert set(_locals()["severities"].removeprefix("${toset([").removesuffix("])}").replace('"', "")
               .replace(" ", "").split(",")) == set(_rule_severities().values()) | {"info"}
    severities = _rule_severities()
    for name, alarm in _locals()["alarms"].items():
        assert alarm["severity"] == severities[alarm["alert"]], name
    generic = _resource("aws_cloudwatch_metric_alarm", "btcpipe")
    assert generic["alarm_actions"] == generic["ok_actions"] == ["${aws_sns_topic.alerts[each.value.severity].arn}"]
    for name in ("skipped_ticks", "kinesis_iterator_age"):
        alarm = _resource("aws_cloudwatch_metric_alarm", name)
        assert alarm["alarm_actions"] == ['${aws_sns_topic.alerts["warning"].arn}'], name
    assert severities["BtcpipeSkippedTicks"] == "warning"
    # Only this account's CloudWatch may publish, and it may use the key the topics are encrypted with.
    policy = _blocks("data")[("aws_iam_policy_document", "alerts_topic")]["statement"][0]
    assert policy["actions"] == ["sns:Publish"]
    assert policy["principals"][0]["identifiers"] == ["cloudwatch.amazonaws.com"]
    kms = {s["sid"]: s for s in _blocks("data")[("aws_iam_policy_document", "kms")]["statement"]}
    assert kms["CloudWatchAlarmsToEncryptedTopics"]["principals"][0]["identifiers"] == ["cloudwatch.amazonaws.com"]


def test_the_plans_four_alerts_reach_a_topic_including_kinesis_own_consumer_lag() -> None:
    by_alert = {a["alert"]: a for a in _locals()["alarms"].values()}
    for alert in ("BtcpipeFeatureStale", "BtcpipeInferenceLatencyHigh", "BtcpipeOnlineStoreMissRate",
                  "BtcpipeConsumerLagHigh"):
        assert by_alert[alert]["severity"] in {"critical", "warning"}, alert
    age = _resource("aws_cloudwatch_metric_alarm", "kinesis_iterator_age")
    assert (age["namespace"], age["metric_name"]) == ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")
    assert age["for_each"] == "${toset(local.market_streams)}"
    assert age["dimensions"] == {"StreamName": "${aws_kinesis_stream.bus[each.key].name}"}


def test_pagerduty_and_slack_subscriptions_are_variables_and_the_key_is_sensitive() -> None:
    variables = {k: v for doc in _parsed().values() for entry in doc.get("variable", []) for k, v in entry.items()}
    assert variables["pagerduty_endpoint_url"]["sensitive"] is True
    assert variables["pagerduty_endpoint_url"]["default"] == ""
    assert "alarm_topic_arn" not in variables
    pagerduty = _resource("aws_sns_topic_subscription", "pagerduty")
    assert pagerduty["topic_arn"] == '${aws_sns_topic.alerts["critical"].arn}'
    assert pagerduty["protocol"] == "https"
    assert pagerduty["endpoint"] == "${var.pagerduty_endpoint_url}"
    assert pagerduty["count"] == '${var.pagerduty_endpoint_url == "" ? 0 : 1}'
    chatbot = _resource("aws_chatbot_slack_channel_configuration", "alerts")
    assert chatbot["slack_team_id"] == "${var.slack_workspace_id}"
    assert chatbot["slack_channel_id"] == "${var.slack_channel_id}"
    assert "aws_sns_topic.alerts[s].arn" in chatbot["sns_topic_arns"]
    assert "ReadOnlyAccess" in chatbot["guardrail_policy_arns"][0]


def test_firehose_archives_three_streams_compressed_and_encrypted_to_prefixes_no_service_writes() -> None:
    deliveries = _locals()["firehose_deliveries"]
    assert deliveries == {"market-sbe-trade": "bronze", "features-1s": "silver", "predictions-1s": "gold"}
    assert set(deliveries) <= set(ALL_STREAMS)
    stream = _resource("aws_kinesis_firehose_delivery_stream", "archive")
    assert stream["for_each"] == "${local.firehose_deliveries}"
    assert stream["kinesis_source_configuration"][0]["kinesis_stream_arn"] == "${local.stream_arn[each.key]}"
    s3 = stream["extended_s3_configuration"][0]
    assert s3["bucket_arn"] == "${aws_s3_bucket.lake.arn}"
    assert s3["prefix"].startswith("${local.firehose_prefix[each.key]}date=!{timestamp:yyyy-MM-dd}/")
    assert s3["error_output_prefix"].startswith("tmp/")  # the lifecycle rule expires it
    assert s3["compression_format"] == "GZIP"
    assert s3["kms_key_arn"] == "${aws_kms_key.btcpipe.arn}"
    assert s3["buffering_size"] == "${var.firehose_buffer_mib}"
    assert s3["buffering_interval"] == "${var.firehose_buffer_s}"
    assert s3["cloudwatch_logging_options"][0]["enabled"] is True
    # Who writes which prefix: the archive prefixes (layer/bus_archive/stream=NAME/) and every task role's write
    # prefixes never overlap, so nothing in the lake has two writers.
    archive = {f"{layer}/bus_archive/stream={name}/" for name, layer in deliveries.items()}
    assert '"${layer}/bus_archive/stream=${s}/"' in _locals()["firehose_prefix"]
    service_prefixes = [p for access in _locals()["task_access"].values() for p in access["write_prefix"]]
    ingestor_bronze = {p.split("/")[1] for p in _locals()["task_access"]["ingestor"]["write_prefix"]
                       if p.startswith("bronze/")}
    assert ingestor_bronze == set(_KIND_OF_INGESTOR.values())  # what the live ingestor writes, nothing more
    for a in archive:
        for p in service_prefixes:
            assert not a.startswith(p), (a, p)
            assert not p.startswith(a), (a, p)
    firehose = {s["sid"]: s for s in _blocks("data")[("aws_iam_policy_document", "firehose")]["statement"]}
    assert firehose["WriteArchivePrefixes"]["actions"] == ["s3:PutObject", "s3:AbortMultipartUpload"]
    assert "local.firehose_prefix" in firehose["WriteArchivePrefixes"]["resources"]
    assert "s3:DeleteObject" not in json.dumps(firehose)


# --- checkov -----------------------------------------------------------------------------------------------------

_OFFLINE = re.compile(
    r"Temporary failure in name resolution|Name or service not known|Network is unreachable|NewConnectionError|"
    r"Failed to establish a new connection|No matching distribution found for checkov|Could not find a version"
)


def _checkov_python() -> Path:
    """The isolated checkov venv (its pins conflict with ours), created once and then reused."""
    python = CHECKOV_VENV / "bin" / "python"
    if python.exists():
        return python
    # Build under a private name and rename into place, so parallel runs never see a half-installed venv.
    staging = REPO / f".venv-checkov.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, timeout=120)
    install = subprocess.run(
        [str(staging / "bin" / "pip"), "install", "--quiet", f"checkov=={CHECKOV_VERSION}"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    if install.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        if _OFFLINE.search(install.stdout + install.stderr):
            pytest.skip(f"checkov {CHECKOV_VERSION} could not be installed without network: "
                        f"{install.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"installing checkov failed:\n{install.stdout}\n{install.stderr}")
    try:
        staging.rename(CHECKOV_VENV)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run finished first; use its venv
    return python


@pytest.mark.timeout(1200)
def test_checkov_finds_nothing_unfixed_or_unjustified_in_terraform_docker_and_kubernetes() -> None:
    result = subprocess.run(
        [str(_checkov_python()), "-m", "checkov.main", "--directory", str(REPO / "deploy"),
         "--framework", "terraform", "dockerfile", "kubernetes", "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "LOG_LEVEL": "ERROR"},
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_framework = {r["check_type"]: r for r in reports}
    assert set(by_framework) == {"terraform", "dockerfile", "kubernetes"}, result.stderr[-2000:]
    failed = [
        f"{r['check_type']}: {c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports for c in r["results"]["failed_checks"]
    ]
    assert failed == []
    assert by_framework["terraform"]["summary"]["passed"] > 100
    for report in reports:  # every skip carries its reason inline
        for check in report["results"]["skipped_checks"]:
            assert check["check_result"].get("suppress_comment", "").strip(), check["check_id"]
