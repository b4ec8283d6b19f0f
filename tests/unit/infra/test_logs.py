from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from btcpipe.cli.main import service_name
from btcpipe.infra.logs import configure_logging


@pytest.fixture
def restored_root_logger() -> Iterator[None]:
    """configure_logging replaces the root handlers; put the test run's own back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("args", "service"),
    [
        (["ingest", "--bus", "redis"], "ingestor"),
        (["process", "--partition", "0/2"], "processor"),
        (["infer"], "inference"),
        (["exchange", "serve"], "exchange"),
        (["--help"], "btcpipe"),
        (["nonsense"], "btcpipe"),
    ],
)
def test_every_log_line_names_the_service_its_command_runs(args: list[str], service: str) -> None:
    assert service_name(args) == service


@pytest.mark.usefixtures("restored_root_logger")
def test_json_log_lines_carry_the_common_fields_and_the_callers_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="ingestor", fmt="json", level="INFO")
    logging.getLogger("btcpipe.test").warning("gap filled", extra={"symbol": "BTCUSDT", "count": 3})
    line = orjson.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert {"ts", "level", "service", "logger", "msg"} <= line.keys()
    assert line["service"] == "ingestor"
    assert line["level"] == "warning"
    assert line["msg"] == "gap filled"
    assert (line["symbol"], line["count"]) == ("BTCUSDT", 3)
    assert line["ts"].endswith("Z")
