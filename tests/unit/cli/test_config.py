from __future__ import annotations

from pathlib import Path

import pytest

from btcpipe.cli.wiring.config import load_config, secret
from btcpipe.domain.errors import ConfigError


def test_defaults_run_embedded_without_servers() -> None:
    cfg = load_config(environ={})
    assert cfg.bus.kind == "memory"
    assert cfg.store.kind == "memory"
    assert cfg.exchange.kind == "local"
    assert cfg.symbols == ("BTCUSDT",)


def test_file_then_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('symbols = ["btcusdt", "ethusdt"]\n[bus]\nkind = "redis"\n[inference]\ndeadline_ms = 50\n')
    cfg = load_config(path, environ={"BTCPIPE__BUS__KIND": "kinesis", "BTCPIPE__STORE__TTL_S": "60"})
    assert cfg.symbols == ("BTCUSDT", "ETHUSDT")
    assert cfg.bus.kind == "kinesis"
    assert cfg.store.ttl_s == 60
    assert cfg.inference.deadline_ms == 50.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[bus]\nkind = 'rabbit'\n", "bus.kind must be one of"),
        ("[store]\nttl_s = 'soon'\n", "store.ttl_s: expected int"),
        ("[lake]\nurl = 'x'\n", "unknown keys: url"),
        ("[nonsense]\n", "unknown config key or section 'nonsense'"),
        ("bus = 3\n", "[bus] must be a table"),
        ("[bus\nkind=", "not valid TOML"),
    ],
)
def test_garbage_config_is_refused_with_the_key_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path, environ={})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_secret_comes_from_the_named_environment_variable() -> None:
    assert secret("MY_KEY", {"MY_KEY": "abc"}) == "abc"
    assert secret("MY_KEY", {}) is None
    assert secret("", {"": "x"}) is None


@pytest.mark.parametrize("tls", [True, False])
def test_bus_tls_reaches_the_bus_and_its_positions_connections(tmp_path: Path, tls: bool) -> None:
    import redis

    from btcpipe.cli.wiring.live import bus_choice, open_bus, open_positions

    path = tmp_path / "c.toml"
    path.write_text(f"[bus]\nkind = 'redis'\nredis_url = 'redis://127.0.0.1:6399/0'\ntls = {str(tls).lower()}\n")
    choice = bus_choice(load_config(path, environ={}), kind=None, url=None, shards=1, prefix=None,
                        kinesis_endpoint=None)
    for adapter in (open_bus(choice), open_positions(choice, None)):
        pool = adapter._client.connection_pool  # type: ignore[attr-defined]
        assert issubclass(pool.connection_class, redis.SSLConnection) is tls
