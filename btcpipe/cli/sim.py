"""``btcpipe sim``: generate a simulated market, print the oracle's score."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import click
import orjson

from btcpipe.cli.wiring.bounds import SEED, positive
from btcpipe.domain.decimal import format_decimal
from btcpipe.domain.errors import BtcpipeError
from btcpipe.domain.tape import MarketTape
from btcpipe.domain.time import iso, parse_time
from btcpipe.market.config import MAX_SIM_S

_DEFAULT_START = "2024-01-01T00:00:00Z"


def _span_options(func: Any) -> Any:
    func = click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed (same seed, same tape).")(
        func
    )
    func = click.option(
        "--start", default=_DEFAULT_START, show_default=True, help="Start: ISO date/time (UTC) or epoch ms/µs."
    )(func)
    func = click.option("--hours", type=positive(MAX_SIM_S / 3600), default=None,
                        help="Span length in hours (default 1).")(func)
    func = click.option("--duration", "duration_s", type=click.IntRange(1, MAX_SIM_S), default=None,
                        help="Span length in seconds.")(func)
    func = preset_option(func)
    return func


def preset_option(func: Any) -> Any:
    """``--preset realistic|classroom``: which simulated market (docs/SIMULATOR.md)."""
    from btcpipe.market.presets import DEFAULT_PRESET, PRESETS

    return click.option(
        "--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET, show_default=True,
        help="Simulated market: 'realistic' (calibrated on real BTCUSDT, oracle R² ≈ 1 %) or 'classroom' "
             "(easy, linear, oracle R² ≈ 16 %).",
    )(func)


def _config(seed: int, start: str, hours: float | None, duration_s: int | None, preset: str) -> Any:
    from btcpipe.market.presets import preset_config

    if hours is not None and duration_s is not None:
        raise click.UsageError("give --hours or --duration, not both")
    seconds = duration_s if duration_s is not None else round((1.0 if hours is None else hours) * 3600)
    try:
        return preset_config(preset, seed=seed, start_us=parse_time(start), duration_s=seconds)
    except (BtcpipeError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group("sim")
def cli() -> None:
    """Market simulator: a deterministic BTCUSDT-like market with a known predictive component.

    See docs/SIMULATOR.md for the model and the oracle.
    """


def _summary(tape: MarketTape, seconds: float, duration_s: int) -> dict[str, Any]:
    trades = tape.trades
    prices = trades.price
    return {
        "symbol": tape.symbol,
        "start": iso(tape.start_us) if len(trades) else None,
        "duration_s": duration_s,
        "trades": len(trades),
        "trades_per_sec": len(trades) / duration_s,
        "first_id": int(trades.id[0]) if len(trades) else None,
        "last_id": int(trades.id[-1]) if len(trades) else None,
        "price_min": format_decimal(int(prices.min())) if len(trades) else None,
        "price_max": format_decimal(int(prices.max())) if len(trades) else None,
        "best_bid_asks": len(tape.best_bid_asks) if tape.best_bid_asks is not None else 0,
        "depth_diffs": len(tape.depth) if tape.depth is not None else 0,
        "generate_seconds": round(seconds, 3),
    }


def _write_trades(tape: MarketTape, out: Path) -> None:
    trades = tape.trades
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from btcpipe.domain.arrow_decimal import PRICE, QTY, mantissas_to_decimal

        table = pa.table(
            {
                "id": trades.id,
                "ts_event": trades.ts_event,
                "price": mantissas_to_decimal(trades.price, PRICE),
                "qty": mantissas_to_decimal(trades.qty, QTY),
                "is_buyer_maker": trades.is_buyer_maker,
                "taker_order": trades.taker_order,
            }
        )
        tmp = out.with_name(out.name + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(out)
    elif out.suffix == ".csv":
        tmp = out.with_name(out.name + ".tmp")
        taker = trades.taker_order.tolist() if trades.taker_order is not None else [""] * len(trades)
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "ts_event", "price", "qty", "is_buyer_maker", "taker_order"])
            for row in zip(
                trades.id.tolist(),
                trades.ts_event.tolist(),
                trades.price.tolist(),
                trades.qty.tolist(),
                trades.is_buyer_maker.tolist(),
                taker,
                strict=True,
            ):
                writer.writerow(
                    (
                        row[0],
                        row[1],
                        format_decimal(row[2]),
                        format_decimal(row[3]),
                        "true" if row[4] else "false",
                        row[5],
                    )
                )
        tmp.replace(out)
    else:
        raise click.BadParameter(f"{out}: the output must end in .parquet or .csv", param_hint="--out")


@cli.command("generate")
@_span_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the raw trades to this .parquet (exact decimals) or .csv file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def generate(
    *, seed: int, start: str, hours: float | None, duration_s: int | None, preset: str, out: Path | None,
    as_json: bool,
) -> None:
    """Simulate a span and print a summary (trades, trades/s, price range); optionally write the trades."""
    from btcpipe.market.simulator import simulate

    config = _config(seed, start, hours, duration_s, preset)
    began = time.perf_counter()
    tape = simulate(config)
    summary = _summary(tape, time.perf_counter() - began, config.duration_s)
    summary["preset"] = preset
    if out is not None:
        _write_trades(tape, out)
        summary["out"] = str(out)
    if as_json:
        click.echo(orjson.dumps(summary).decode())
        return
    for key, value in summary.items():
        click.echo(f"{key:>16}: {value}")


@cli.command("oracle")
@_span_options
@click.option(
    "--mid",
    "mid_source",
    type=click.Choice(["book", "trades"]),
    default="book",
    show_default=True,
    help="Label mid: best bid/ask, or the last trade price (the proxy of a trades-only history).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the score as JSON.")
def oracle(
    *, seed: int, start: str, hours: float | None, duration_s: int | None, preset: str, mid_source: str,
    as_json: bool,
) -> None:
    """R² and directional hit rate of the best possible predictor of the 10-second label over the span.

    This is the ceiling a model trained on the simulated market can reach.
    """
    from btcpipe.market.simulator import oracle_score, simulate

    config = _config(seed, start, hours, duration_s, preset)
    try:
        score = oracle_score(simulate(config), config, mid_source="trades" if mid_source == "trades" else "book")
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc
    result = {
        "seed": seed,
        "preset": preset,
        "start": iso(config.start_us),
        "duration_s": config.duration_s,
        "r2": score.r2,
        "hit_rate": score.hit_rate,
        "n": score.n,
        "mid": mid_source,
    }
    if as_json:
        click.echo(orjson.dumps(result).decode())
    else:
        click.echo(
            f"oracle over {config.duration_s} s from {result['start']} ({preset}, seed {seed}): "
            f"R² {score.r2:.4f}, hit rate {score.hit_rate:.2%} on {score.n} seconds"
        )


@cli.command("calibrate")
@click.option("--recording", "recordings", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A Binance stream recording (gzip or plain); repeat for several. Each is measured on its own.")
@_span_options
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
def calibrate(
    *, recordings: tuple[Path, ...], seed: int, start: str, hours: float | None, duration_s: int | None,
    preset: str, fmt: str,
) -> None:
    """Stylized facts of real recordings beside a simulated span, with the band each must fall in.

    Exits 1 when a simulated fact falls outside its band (docs/SIMULATOR.md, "Calibration").
    """
    from btcpipe.binance.recording import load_recording
    from btcpipe.market.calibration import calibration_table, markdown_table
    from btcpipe.market.facts import stylized_facts
    from btcpipe.market.simulator import simulate

    config = _config(seed, start, hours if hours is not None or duration_s is not None else 2.0, duration_s, preset)
    try:
        real = [stylized_facts(load_recording([p]).to_tape()) for p in recordings]
        simulated = stylized_facts(simulate(config))
    except BtcpipeError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = calibration_table(real, simulated)
    names = [p.name for p in recordings]
    sim_name = f"{preset} ({config.duration_s / 3600:g} h, seed {seed})"
    if fmt == "json":
        click.echo(orjson.dumps({"recordings": names, "simulated": sim_name,
                                 "rows": [r.as_dict() for r in rows]}).decode())
    elif fmt == "markdown":
        click.echo(markdown_table(rows, names, sim_name))
    else:
        width = max(len(r.meaning) for r in rows)
        click.echo(f"{'fact':<{width}}  {'  '.join(f'{n[:12]:>12}' for n in names)}  {sim_name[:14]:>14}  band")
        for r in rows:
            real_cells = "  ".join(f"{v:>12.4g}" for v in r.real)
            band = f"{r.low:.3g} … {r.high:.3g}" if r.compared else "—"
            flag = "" if r.ok else "   <-- outside"
            click.echo(f"{r.meaning:<{width}}  {real_cells}  {r.simulated:>14.4g}  {band}{flag}")
    failed = [r.key for r in rows if not r.ok]
    if failed:
        click.echo(f"outside the band: {', '.join(failed)}", err=True)
        raise SystemExit(1)
