"""Every number in the config and on the command line is bounded: a bad one is refused, by name, without a
traceback, before anything is allocated, connected or waited for."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import get_type_hints

import pytest
from click.testing import CliRunner

from btcpipe.cli.main import cli
from btcpipe.cli.wiring import config as config_module
from btcpipe.cli.wiring.config import Config, load_config
from btcpipe.domain.errors import ConfigError
from btcpipe.infra.redis_connection import RedisOptions, connect_redis

BAD_PORT_REDIS = "redis://127.0.0.1:99999/0"


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    # A refusal leaves through sys.exit (click's usage error, or the command's own "error: ..." exit);
    # anything else escaped as an exception and would have been a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[inference]\ndeadline_ms = nan\n", "inference.deadline_ms"),
        ("[inference]\nstale_after_s = inf\n", "inference.stale_after_s"),
        ("[inference]\nreload_check_s = -inf\n", "inference.reload_check_s"),
        ("[inference]\ndeadline_ms = 0\n", "inference.deadline_ms"),
        ("[inference]\ninterval_s = 3\n", "inference.interval_s"),
        ("[metrics]\nport = 99999\n", "metrics.port"),
        ("[metrics]\nport = -1\n", "metrics.port"),
        ("[store]\nttl_s = 0\n", "store.ttl_s"),
        ("[processor]\nlateness_ms = -5\n", "processor.lateness_ms"),
        (f"[bus]\nredis_url = '{BAD_PORT_REDIS}'\n", "bus.redis_url"),
        ("[store]\nredis_url = 'http://127.0.0.1:6379'\n", "store.redis_url"),
        ("[exchange]\nrest_url = 'http://127.0.0.1:70000'\n", "exchange.rest_url"),
        ("[exchange]\nstream_url = 'http://127.0.0.1:9000'\n", "exchange.stream_url"),
        ("[lake]\nuri = 'http://x'\n", "lake.uri"),
    ],
)
def test_infer_refuses_a_bad_config_number_by_name_without_a_traceback(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(path, environ={})
    code, output = _invoke(["infer", "--config", str(path), "--bus", "redis"])
    assert code != 0
    assert key in output


def test_environment_overrides_are_bounded_too() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        load_config(environ={"BTCPIPE__METRICS__PORT": "99999"})
    with pytest.raises(ConfigError, match=r"inference\.deadline_ms"):
        load_config(environ={"BTCPIPE__INFERENCE__DEADLINE_MS": "nan"})
    with pytest.raises(ConfigError, match=r"store\.ttl_s"):
        load_config(environ={"BTCPIPE__STORE__TTL_S": "9" * 5000})


def test_every_number_of_the_config_has_a_range() -> None:
    hints = get_type_hints(Config)
    numbers = {
        (section.name, f.name)
        for section in dataclasses.fields(Config)
        if dataclasses.is_dataclass(hints[section.name])
        for f in dataclasses.fields(hints[section.name])
        if get_type_hints(hints[section.name])[f.name] in (int, float)
    }
    assert numbers
    assert numbers <= set(config_module._RANGES)


BACKFILL = ["backfill", "--start", "2024-01-01", "--end", "2024-01-01T01:00", "--lake", "unused-lake",
            "--base-url", "http://127.0.0.1:9"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([*BACKFILL, "--weight-limit", "0"], "--weight-limit"),
        ([*BACKFILL, "--weight-limit", "10"], "--weight-limit"),  # below one request's weight: would crawl
        ([*BACKFILL, "--weight-window", "0"], "--weight-window"),
        ([*BACKFILL, "--weight-window", "nan"], "--weight-window"),
        ([*BACKFILL, "--weight-share", "inf"], "--weight-share"),
        ([*BACKFILL, "--max-retries", "-1"], "--max-retries"),
        ([*BACKFILL, "--page-limit", "1001"], "--page-limit"),
        (["run", "--history", "100000h"], "--history"),
        (["run", "--history", "9" * 400], "--history"),
        (["run", "--duration", "0s"], "--duration"),
        (["run", "--seed", "-1"], "--seed"),
        (["infer", "--deadline-ms", "nan"], "--deadline-ms"),
        (["infer", "--stale-after", "inf"], "--stale-after"),
        (["infer", "--metrics-port", "99999"], "--metrics-port"),
        (["ingest", "--duration", "inf"], "--duration"),
        (["process", "--bus", "redis", "--bus-url", BAD_PORT_REDIS], "--bus-url"),
        (["process", "--store-url", BAD_PORT_REDIS], "--store-url"),
        (["replay", "--speed", "nan"], "--speed"),
        (["exchange", "serve", "--port", "99999"], "--port"),
        (["exchange", "serve", "--sim-hours", "100000"], "--sim-hours"),
        (["sim", "generate", "--hours", "nan", "--out", "unused.parquet"], "--hours"),
        (["train", "--lake", "x", "--start", "2024-01-01", "--end", "2024-01-02", "--name", "m",
          "--learning-rate", "nan"], "--learning-rate"),
    ],
)
def test_bad_numbers_on_the_command_line_are_usage_errors_naming_the_flag(args: list[str], named: str) -> None:
    code, output = _invoke(args)
    assert code == 2, output
    assert named in output


def test_model_promote_on_an_unsupported_lake_is_an_error_not_a_traceback() -> None:
    code, output = _invoke(["model", "promote", "--lake", "http://x", "--name", "m", "--version", "v1"])
    assert code == 1
    assert "unsupported lake location 'http://x'" in output


def test_a_redis_url_with_a_bad_port_is_described_and_refused_not_a_crash() -> None:
    options = RedisOptions("redis://:hunter2@127.0.0.1:99999/0")
    assert repr(options) == "RedisOptions(url='redis://127.0.0.1:99999/0', tls=False)"
    with pytest.raises(ConfigError, match="port must be a number 1-65535") as caught:
        connect_redis(options)
    assert "hunter2" not in str(caught.value)
