from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from btcpipe.cli.main import service_name
from btcpipe.infra.logs import QUIET_LIBRARIES, configure_logging


@pytest.fixture
def restored_root_logger() -> Iterator[None]:
    """configure_logging replaces the root handlers; put the test run's own back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in libraries.items():
        logging.getLogger(name).setLevel(library_level)


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


@pytest.mark.usefixtures("restored_root_logger")
@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
@pytest.mark.parametrize(
    "library", ["botocore", "botocore.endpoint", "boto3", "urllib3.connectionpool", "s3transfer", "aiohttp.client",
                "websockets.client"],
)
def test_network_libraries_never_log_below_warning_whatever_the_level(
    level: str, library: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(service="btcpipe", fmt="json", level=level)
    logging.getLogger(library).debug("X-Amz-Security-Token: MARKER")
    logging.getLogger(library).info("Authorization: MARKER")
    assert logging.getLogger(library).getEffectiveLevel() >= logging.WARNING
    assert "MARKER" not in capsys.readouterr().err


@pytest.mark.usefixtures("restored_root_logger")
def test_btcpipe_itself_still_logs_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="btcpipe", fmt="json", level="DEBUG")
    logging.getLogger("btcpipe.lake").debug("listed")
    assert "listed" in capsys.readouterr().err
