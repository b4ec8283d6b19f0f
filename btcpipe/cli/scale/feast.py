"""``btcpipe feast``: a Feast feature repository over the lake's silver, and the Feast-shaped copy it reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from btcpipe.cli.features import load_params, parse_day
from btcpipe.cli.wiring.engines import split_symbols
from btcpipe.domain.errors import BtcpipeError

EXIT_FAILED = 1

_lake_option = click.option("--lake", "lake_uri", envvar="BTCPIPE_LAKE", default="lake", show_default=True,
                            show_envvar=True, help="Lake root: a directory or s3://bucket/prefix.")
_endpoint_option = click.option("--endpoint-url", envvar="BTCPIPE_S3_ENDPOINT_URL", default=None, show_envvar=True,
                                help="S3 endpoint (e.g. a local moto_server); default: AWS.")
_params_option = click.option(
    "--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
    help="The schema document (a model's schema_v1.json, or `features build --write-params`) to pin to.")


@click.group("feast")
def cli() -> None:
    """Feast (optional, in its own venv: make .venv-feast) over the same lake and Redis; docs/FEAST.md."""


@cli.command("init")
@click.option("--repo", "repo_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory of the feature repository (created; its files are replaced).")
@_lake_option
@_endpoint_option
@_params_option
@click.option("--redis-url", default="redis://127.0.0.1:6379/0", show_default=True,
              help="Feast's online store (its own keys; btcpipe's features:{symbol}:{ts} keys are untouched).")
@click.option("--redis-password-env", default=None,
              help="Environment variable holding the Redis password (Feast substitutes ${VAR} at load).")
@click.option("--ttl", "ttl_s", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seconds after which a row is too old to serve (Feast's feature view ttl).")
def init(  # noqa: PLR0917 - click passes every option positionally
    repo_dir: Path, lake_uri: str, endpoint_url: str | None, params_file: Path, redis_url: str,
    redis_password_env: str | None, ttl_s: int,
) -> None:
    """Write feature_store.yaml and btcpipe_repo.py: entity `symbol`, feature view `features_1s` over
    silver/features_1s_feast, online store Redis, feature service btcpipe_v1_<hash> pinned to the schema hash.
    Then: `btcpipe feast export …`, and in the Feast venv `feast apply` and `feast materialize …`."""
    from btcpipe.features.spec import schema_hash
    from btcpipe.lake.lake import Lake
    from btcpipe.run.feast_repo import repo_files, write_repo

    params = load_params(params_file)
    try:
        files = repo_files(Lake.open(lake_uri, endpoint_url=endpoint_url), params, endpoint_url=endpoint_url,
                           redis_url=redis_url, redis_password_env=redis_password_env, ttl_s=ttl_s)
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    for path in write_repo(repo_dir, files):
        click.echo(f"wrote {path}", err=True)
    click.echo(json.dumps({"repo": str(repo_dir), "schema_hash": schema_hash(params),
                           "feature_service": f"btcpipe_v1_{schema_hash(params)[:16]}"}))


@cli.command("export")
@_lake_option
@_endpoint_option
@_params_option
@click.option("--symbol", default="BTCUSDT", show_default=True, help="Instrument symbol.")
@click.option("--symbols", default=None, help="Several symbols, comma-separated (instead of --symbol).")
@click.option("--start", required=True, help="First day (ISO date/time or epoch ms/µs).")
@click.option("--end", required=True, help="Last day, inclusive.")
def export(lake_uri: str, endpoint_url: str | None, params_file: Path, symbol: str, symbols: str | None,  # noqa: PLR0917
           start: str, end: str) -> None:
    """Write silver/features_1s_feast (the rows of silver/features_1s in the shape Feast reads) for the days;
    a day whose silver has another schema hash than --params is refused."""
    from btcpipe.features.spec import schema_hash
    from btcpipe.lake.lake import Lake
    from btcpipe.run.feast_repo import export_silver

    params = load_params(params_file)
    try:
        done = export_silver(Lake.open(lake_uri, endpoint_url=endpoint_url), split_symbols(symbol, symbols),
                             parse_day(start), parse_day(end), pinned_hash=schema_hash(params))
    except BtcpipeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps({"days": [{"symbol": d.symbol, "day": d.day.isoformat(), "rows": d.rows, "part": d.path}
                                    for d in done]}, indent=2))
