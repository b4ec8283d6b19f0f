"""``btcpipe evaluate``: score a registered model beside the baselines (and the oracle on simulated data)."""

from __future__ import annotations

from typing import Any

import click
import orjson

from btcpipe.cli.wiring.bounds import SEED
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.time import parse_time
from btcpipe.market.config import MAX_SIM_S


@click.command("evaluate")
@click.option("--lake", "lake_uri", required=True, help="Lake root: a local directory or s3://bucket/prefix.")
@click.option("--s3-endpoint", default=None, help="S3 endpoint URL (e.g. a moto_server), for s3:// lakes.")
@click.option("--name", required=True, help="Model name in the registry.")
@click.option("--version", default="production", show_default=True, help="Version (v1, ...), alias or 'latest'.")
@click.option("--start", default=None, help="Evaluate on [START, END) instead of the model's own test span.")
@click.option("--end", default=None, help="End (exclusive) of the evaluation span.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write an HTML report with PNG plots into this directory.")
@click.option("--sim-seed", type=SEED, default=None,
              help="The gold came from the simulator with this seed: add the oracle.")
@click.option("--sim-start", default=None, help="Start of that simulation (default: the simulator's default).")
@click.option("--sim-duration-s", type=click.IntRange(1, MAX_SIM_S), default=None,
              help="Length of that simulation in seconds.")
@click.option("--sim-preset", type=click.Choice(["classroom", "realistic"]), default="realistic", show_default=True,
              help="Preset of that simulation (btcpipe sim --preset).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the shuffled-label controls.")
def cli(
    *,
    lake_uri: str, s3_endpoint: str | None, name: str, version: str, start: str | None, end: str | None,
    as_json: bool, report_dir: str | None, sim_seed: int | None, sim_start: str | None,
    sim_duration_s: int | None, sim_preset: str, seed: int,
) -> None:
    """Score a registered model: MAE, MSE, R², hit rate on non-zero moves — beside predict-zero, the last
    1-s return and ridge regression, plus shuffled-label controls (≈ 50 % hits) and, for simulated data,
    the oracle. Baselines are fitted on the model's own training span (from its manifest)."""
    from btcpipe.lake.lake import Lake
    from btcpipe.model.gold import load_gold
    from btcpipe.model.registry import ModelRegistry
    from btcpipe.model.runtime import OnnxPredictor
    from btcpipe.model.training_run import SimulatedOrigin, evaluate_model

    if (start is None) != (end is None):
        raise click.BadParameter("give both --start and --end, or neither")
    try:
        lake = Lake.open(lake_uri, endpoint_url=s3_endpoint)
        registry = ModelRegistry(lake.store)
        resolved = registry.resolve(name, version)
        predictor = OnnxPredictor(registry.load(name, resolved))
        manifest = predictor.manifest
        symbol = str(manifest.get("symbol"))
        first = int(manifest["data"]["first_ts"])
        last = int(manifest["data"]["last_ts"])
        span = (parse_time(start), parse_time(end)) if start and end else None
        lo = min(first, span[0]) if span else first
        hi = max(last + 1, span[1]) if span else last + 1
        gold = load_gold(lake, symbol, lo, hi)
        sim = None
        if sim_seed is not None:
            from btcpipe.market.config import SimConfig

            defaults = SimConfig()
            sim = SimulatedOrigin(
                preset=sim_preset,
                seed=sim_seed,
                start_us=parse_time(sim_start) if sim_start else defaults.start_us,
                duration_s=sim_duration_s or defaults.duration_s,
            )
        evaluation, split, yhat = evaluate_model(predictor, gold.rows, test_span=span, sim=sim, seed=seed)
        doc = {"name": name, "version": resolved, "symbol": symbol, **evaluation.as_dict()}
        if report_dir:
            from btcpipe.model.report import write_report

            page = write_report(report_dir, evaluation, split.test, yhat, manifest, title=f"{name} {resolved}")
            doc["report"] = str(page)
    except (BtcpipeError, KeyError, ValueError) as exc:
        raise click.ClickException(f"evaluation failed: {exc}") from exc
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    _print_table(doc)


def _print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{doc['name']} {doc['version']} on {doc['symbol']}")
    for col in ("predictor", "MAE", "MSE", "R²", "hit rate", "moves"):
        table.add_column(col, justify="right")
    entries = [("model", doc["model"])]
    entries += [(f"baseline {k}", v) for k, v in doc["baselines"].items()]
    entries += [(f"control {k}", v) for k, v in doc["controls"].items()]
    intervals = doc.get("intervals", {})
    ci_of = {"model": intervals.get("model", {}), **{f"baseline {k}": v for k, v in
                                                      intervals.get("baselines", {}).items()}}
    ci_of["control shuffled_labels_ridge"] = intervals.get("shuffled_labels_ridge", {})
    for label, s in entries:
        ci = ci_of.get(label, {})
        table.add_row(label, f"{s['mae']:.3e}", f"{s['mse']:.3e}", f"{s['r2']:.4f}{_ci(ci.get('r2'), '.4f')}",
                      f"{s['hit_rate']:.2%}{_ci(ci.get('hit_rate'), '.2%')}", str(s["n_moves"]))
    console = Console()
    console.print(table)
    vs_ridge = intervals.get("model_vs_ridge", {}).get("r2_difference")
    if vs_ridge:
        console.print(f"model R² − ridge R²: {vs_ridge['value']:.4f}{_ci(vs_ridge, '.4f')} (95 % block bootstrap)")
    oracle = doc.get("oracle")
    if isinstance(oracle, dict):
        share = oracle.get("model_vs_oracle", {}).get("r2_share")
        console.print(f"oracle R² {oracle['r2']:.4f}, hit {oracle['hit_rate']:.2%}; "
                      f"model reaches {oracle['model_r2_share']:.1%}{_ci(share, '.1%')} of the oracle's R²")
    for r in doc.get("by_regime", []):
        console.print(f"{r['kind']} {r['regime']}: n {r['n']}, MAE {r['mae']['value']:.3e}, "
                      f"hit rate {r['hit_rate']['value']:.2%}{_ci(r['hit_rate'], '.2%')}")
    if "report" in doc:
        console.print(f"report: {doc['report']}")


def _ci(interval: Any, fmt: str) -> str:
    """`` [low, high]`` of an interval dict, or nothing."""
    if not isinstance(interval, dict) or interval.get("low") is None or interval.get("high") is None:
        return ""
    return f" [{format(interval['low'], fmt)}, {format(interval['high'], fmt)}]"
