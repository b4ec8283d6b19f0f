"""``btcpipe backfill`` end to end: the local exchange → an S3 lake on moto_server, and clear CLI errors."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import orjson
import pytest
from click.testing import CliRunner
from support.backfill import US_ERA_START, assert_trades_equal_tape, sim_tape

from btcpipe.cli.backfill import cli
from btcpipe.exchange.server import LocalExchange
from btcpipe.infra.devservers import MotoServer
from btcpipe.lake.lake import Lake

pytestmark = pytest.mark.timeout(120)


@pytest.mark.services
def test_cli_backfills_rest_then_dumps_into_an_s3_lake(moto_server: MotoServer) -> None:
    bucket = f"backfill-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/lake"
    tape = sim_tape(seed=61, duration_s=300)
    runner = CliRunner()
    with LocalExchange(tape) as ex:
        rest = runner.invoke(cli, ["--kind", "trades", "--source", "rest", "--start", "2025-01-01T00:00:00Z",
                                   "--end", "2025-01-01T00:05:00Z", "--base-url", ex.base_url, "--lake", uri,
                                   "--s3-endpoint", moto_server.endpoint, "--progress", "log"])
        dumps = runner.invoke(cli, ["--kind", "trades", "--source", "dumps", "--start", "2025-01-01",
                                    "--end", "2025-01-02", "--base-url", ex.base_url, "--lake", uri,
                                    "--s3-endpoint", moto_server.endpoint, "--progress", "none"])
    assert rest.exit_code == 0, rest.output
    assert dumps.exit_code == 0, dumps.output
    first = orjson.loads(rest.stdout)
    second = orjson.loads(dumps.stdout)
    assert first["rows_added"] == len(tape.trades)
    # The dump of the same day brings the same trades: nothing new, every row recognised as a duplicate.
    assert second["rows_added"] == 0
    assert second["rows_duplicate"] == len(tape.trades)
    assert_trades_equal_tape(Lake.open(uri, endpoint_url=moto_server.endpoint), tape)


def test_cli_refuses_an_inverted_span_and_reports_exchange_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    inverted = runner.invoke(cli, ["--start", "2025-01-02", "--end", "2025-01-01", "--lake", str(tmp_path)])
    assert inverted.exit_code != 0
    assert "must be after --start" in inverted.output
    tape = sim_tape(seed=67, duration_s=60)
    with LocalExchange(tape) as ex:
        unknown = runner.invoke(cli, ["--symbol", "ETHUSDT", "--start", str(US_ERA_START), "--end",
                                      str(US_ERA_START + 60_000_000), "--base-url", ex.base_url,
                                      "--lake", str(tmp_path / "lake"), "--progress", "none"])
    assert unknown.exit_code == 1
    assert "backfill failed" in unknown.output
    assert "Invalid symbol" in unknown.output
    assert "GET /api/v3/aggTrades?symbol=ETHUSDT" in unknown.output


def test_every_option_is_documented_in_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for option in ("--symbol", "--kind", "--source", "--start", "--end", "--base-url", "--lake", "--s3-endpoint"):
        assert option in result.output
