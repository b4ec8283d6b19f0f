"""``btcpipe model``: the model registry in the lake — list versions, promote one, roll back."""

from __future__ import annotations

from typing import Any

import click
import orjson

from btcpipe.domain.errors import BtcpipeError


def _registry(lake_uri: str, s3_endpoint: str | None) -> Any:
    from btcpipe.lake.objects import open_store
    from btcpipe.model.registry import ModelRegistry

    return ModelRegistry(open_store(lake_uri, endpoint_url=s3_endpoint))


_lake = click.option("--lake", "lake_uri", required=True, help="Lake root: a local directory or s3://bucket/prefix.")
_endpoint = click.option("--s3-endpoint", default=None, help="S3 endpoint URL (e.g. a moto_server), for s3:// lakes.")
_name = click.option("--name", required=True, help="Model name (models/<name>/ in the lake).")


@click.group("model")
def cli() -> None:
    """Model registry: versions live at models/<name>/<version>/ with a movable 'production' alias."""


@cli.command("list")
@_lake
@_endpoint
@_name
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_versions(lake_uri: str, s3_endpoint: str | None, name: str, as_json: bool) -> None:
    """List the registered versions of a model, marking the production one."""
    try:
        versions = _registry(lake_uri, s3_endpoint).list(name)
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = [
        {"version": v.version, "production": v.is_production, "symbol": v.manifest.get("symbol"),
         "r2": v.manifest.get("metrics", {}).get("model", {}).get("r2"),
         "hit_rate": v.manifest.get("metrics", {}).get("model", {}).get("hit_rate"),
         "first_ts": v.manifest.get("data", {}).get("first_ts"), "last_ts": v.manifest.get("data", {}).get("last_ts")}
        for v in versions
    ]
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"model {name}")
    for col in ("version", "production", "symbol", "test R²", "hit rate"):
        table.add_column(col)
    for r in rows:
        r2, hit = r["r2"], r["hit_rate"]
        table.add_row(str(r["version"]), "★" if r["production"] else "", str(r["symbol"] or ""),
                      f"{r2:.4f}" if isinstance(r2, float) else "", f"{hit:.2%}" if isinstance(hit, float) else "")
    Console().print(table)


@cli.command("promote")
@_lake
@_endpoint
@_name
@click.option("--version", "version", required=True, help="Version to serve (v1, v2, ... or 'latest').")
def promote(lake_uri: str, s3_endpoint: str | None, name: str, version: str) -> None:
    """Point the production alias at VERSION (verified first); the previous one stays in history."""
    try:
        registry = _registry(lake_uri, s3_endpoint)
        registry.promote(name, version)
        click.echo(f"{name}: production → {registry.production_version(name)}")
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("rollback")
@_lake
@_endpoint
@_name
def rollback(lake_uri: str, s3_endpoint: str | None, name: str) -> None:
    """Move the production alias back to the version promoted before the current one."""
    try:
        version = _registry(lake_uri, s3_endpoint).rollback(name)
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name}: production → {version}")
