from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from btcpipe.cli.wiring.config import load_config
from btcpipe.domain.errors import ConfigError
from btcpipe.infra.tracing import (
    NO_TRACING,
    TracingSettings,
    format_traceparent,
    is_sampled,
    open_tracing,
    parse_traceparent,
    second_ids,
)


def test_tracing_is_off_by_default_and_off_means_the_shared_no_op() -> None:
    config = load_config(environ={})
    assert config.tracing == TracingSettings()
    assert not config.tracing.enabled
    tracing = open_tracing(config.tracing, "processor")
    assert tracing is NO_TRACING
    assert not tracing.sample()
    assert tracing.second_traceparent("BTCUSDT", 1_700_000_000_000_000) is None


def test_tracing_section_loads_from_the_environment_and_bad_values_are_refused() -> None:
    config = load_config(environ={"BTCPIPE__TRACING__ENABLED": "true", "BTCPIPE__TRACING__EXPORTER": "console",
                                  "BTCPIPE__TRACING__SAMPLE_RATIO": "0.25"})
    assert config.tracing == TracingSettings(enabled=True, exporter="console", sample_ratio=0.25)
    with pytest.raises(ConfigError, match=r"tracing\.exporter"):
        load_config(environ={"BTCPIPE__TRACING__EXPORTER": "xray"})
    with pytest.raises(ConfigError, match="sample_ratio"):
        load_config(environ={"BTCPIPE__TRACING__SAMPLE_RATIO": "1.5"})
    with pytest.raises(ConfigError, match="endpoint"):
        TracingSettings(enabled=True, endpoint="collector:4318")


def test_traceparent_round_trips_and_garbage_is_not_a_context() -> None:
    text = format_traceparent(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
    assert text == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(text) == (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True)
    assert is_sampled(text)
    assert not is_sampled(format_traceparent(1, 2, sampled=False))
    assert not is_sampled(None)
    for bad in ("", "00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "00-1-2"):
        assert parse_traceparent(bad) is None, bad


def test_a_second_has_the_same_ids_everywhere_and_different_seconds_differ() -> None:
    t = 1_700_000_000_000_000
    assert second_ids("BTCUSDT", t) == second_ids("BTCUSDT", t)
    assert second_ids("BTCUSDT", t) != second_ids("BTCUSDT", t + 1_000_000)
    assert second_ids("BTCUSDT", t) != second_ids("ETHUSDT", t)


def test_a_seconds_root_span_takes_the_ids_of_its_traceparent_and_other_spans_stay_random() -> None:
    exporter = InMemorySpanExporter()
    tracing = open_tracing(TracingSettings(enabled=True, sample_ratio=1.0), "test", exporter=exporter)
    t = 1_700_000_000_000_000
    root = tracing.start_second("BTCUSDT", t)
    assert root is not None
    assert root.traceparent == tracing.second_traceparent("BTCUSDT", t)
    child = tracing.start("store.write", parent=root.traceparent)
    other = tracing.start("ingest.receive")
    for span in (child, root, other):
        span.end()
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert finished["store.write"].parent.span_id == second_ids("BTCUSDT", t)[1]  # type: ignore[union-attr]
    assert finished["ingest.receive"].context.trace_id != second_ids("BTCUSDT", t)[0]
    assert finished["features.second"].resource.attributes["service.name"] == "btcpipe-test"
