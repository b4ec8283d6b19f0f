"""The run report as a page a person reads: the headline first, then readable tables and the plots.

Rendered from the summary document alone (``summary.json``), so ``btcpipe report RUN_DIR`` rebuilds it.
Times are ISO UTC, returns in basis points, latencies in ms; nested data becomes "key: value" lines,
never JSON. Everything fits a 1280-px window (tables wrap long values, images shrink to the page).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from btcpipe.domain.time import iso

DEADLINE_MS = 100.0
_LABEL_MID = {"best_bid_ask": "best bid/ask mid", "last_trade": "last trade price (no best bid/ask in the history)"}
_TIME_KEYS = ("first_prediction", "last_prediction", "first_ts", "last_ts")
_SKIP_KEYS = ("history", "params", "metrics", "oracle", "card")

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.headline{border-radius:8px;padding:.8em 1.2em;margin:1em 0;background:#f3f8f3;border:1px solid #b9d9b9}
.headline.failed{background:#fbf0f0;border-color:#e0b4b4}
.headline li{margin:.25em 0}
table{border-collapse:collapse;margin:.6em 0 1.2em;width:100%;table-layout:auto}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px;vertical-align:top;
overflow-wrap:anywhere;word-break:break-word}
th{background:#f5f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ok{color:#1a7f37;font-weight:600}.bad{color:#b3261e;font-weight:600}.muted{color:#666;font-size:13px}
figure{margin:1em 0}img{max-width:100%;height:auto;display:block}figcaption{color:#555;font-size:13px}
code{overflow-wrap:anywhere}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def pct(x: Any, digits: int = 1) -> str:
    return f"{x * 100:.{digits}f} %" if isinstance(x, int | float) and math.isfinite(x) else "n/a"


def ci_text(ci: Mapping[str, Any] | None, scale: float = 100.0, digits: int = 2, unit: str = " %") -> str:
    """``1.23 % [0.80, 1.60]`` from an interval dict {value, low, high}."""
    if not ci or ci.get("value") is None:
        return "n/a"
    text = f"{ci['value'] * scale:.{digits}f}{unit}"
    if ci.get("low") is not None and ci.get("high") is not None:
        text += f" [{ci['low'] * scale:.{digits}f}, {ci['high'] * scale:.{digits}f}]"
    return text


def fmt(key: str, value: Any) -> str:
    """One value, readable: ISO times for epoch µs, rounded floats, lists and dicts as short text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and (key in _TIME_KEYS or key.endswith("_us")) and value > 10**14:
        return iso(value)
    if isinstance(value, float) and "hit_rate" in key:
        return pct(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {fmt(str(k), v)}" for k, v in value.items() if not isinstance(v, Mapping | list))
    if isinstance(value, list):
        if all(isinstance(v, str | int | float) for v in value) and len(value) <= 8:
            return ", ".join(fmt(key, v) for v in value)
        return f"{len(value)} items"
    return str(value)


def kv_rows(items: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a mapping into (label, text) rows: nested mappings one level deep, big lists counted."""
    rows: list[tuple[str, str]] = []
    for key, value in items.items():
        if key in _SKIP_KEYS:
            continue
        label = f"{prefix}{key}"
        if isinstance(value, Mapping) and not prefix:
            rows.extend(kv_rows(value, prefix=f"{label} · "))
        else:
            rows.append((label, fmt(str(key), value)))
    return rows


def table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """An HTML table; cells from column ``numeric_from`` on are right-aligned numbers. Cells are HTML."""
    out = ["<table>"]
    if any(head):
        out += ["<tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f"<td class='num'>{c}</td>" if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def second_end_to_prediction(hops: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The hop from the end of a second to its prediction, or (approximately) the sum of the two hops that
    make it up when the run did not measure it directly."""
    for name, p in hops.items():
        squashed = name.replace(" ", "").replace("_", "").lower()
        if squashed.startswith("secondend") and squashed.endswith("prediction") and p.get("n"):
            return dict(p), "measured"
    parts = [p for name, p in hops.items() if p.get("n") and name in ("second end→feature row",
                                                                       "feature row→prediction")]
    if len(parts) == 2:
        return {"n": min(int(p["n"]) for p in parts),
                "p50_ms": sum(float(p["p50_ms"]) for p in parts),
                "p99_ms": sum(float(p["p99_ms"]) for p in parts)}, "sum of its two hops' percentiles (a bound)"
    return None, "not measured"


def headline(doc: Mapping[str, Any]) -> str:
    ok = bool(doc.get("ok"))
    items: list[str] = []
    status = ("<span class='ok'>Run succeeded</span>" if ok else
              f"<span class='bad'>Run FAILED at stage “{esc(doc.get('failed_stage'))}”</span>: {esc(doc.get('error'))}")
    market = doc.get("market") or {}
    plan = doc.get("plan") or {}
    what = esc(market.get("source", "?"))
    if market.get("sim_preset"):
        what += f" ({esc(market['sim_preset'])} preset, seed {esc(market.get('sim_seed'))})"
    items.append(f"{status} in {fmt('seconds', doc.get('seconds'))} s · {esc(doc.get('started'))} → "
                 f"{esc(doc.get('finished'))} · market: {what} · history {plan.get('history_s', '?')} s, live "
                 f"{plan.get('duration_s', '?')} s")
    train = stage(doc, "train")
    if train:
        iv = (train.get("metrics") or {}).get("intervals") or {}
        model = iv.get("model", {})
        text = (f"<b>Model on its test span</b>: R² {ci_text(model.get('r2'))}, hit rate "
                f"{ci_text(model.get('hit_rate'), digits=1)}")
        ridge = (iv.get("baselines") or {}).get("ridge")
        if ridge:
            text += f"; ridge R² {ci_text(ridge.get('r2'))}"
        oracle = train.get("oracle") or {}
        if oracle.get("oracle"):
            share = (oracle.get("model_vs_oracle") or {}).get("r2_share")
            oracle_r2 = oracle["oracle"].get("r2") or {}
            text += f"; the oracle (best possible) R² {ci_text(oracle_r2)}"
            if (oracle_r2.get("low") or 0.0) > 0 and share and share.get("value") is not None:
                text += f" — the model reaches {ci_text(share, digits=0)} of it"
            else:
                text += (" — its interval reaches zero: this test span is too short to measure the model "
                         "against it (a longer --history helps)")
        method = iv.get("method") or {}
        rows_tested = (train.get("rows") or {}).get("test")
        items.append(text + f" <span class='muted'>(95 % block-bootstrap intervals over {rows_tested} test seconds, "
                     f"blocks of {method.get('block_s', '?')} s)</span>")
    live = doc.get("live") or {}
    summary = live.get("summary") or {}
    if summary:
        hit = live.get("hit_rate_interval")
        items.append(f"<b>Live</b>: {summary.get('predictions', 0)} predictions, {summary.get('realized', 0)} "
                     f"realized, hit rate {ci_text(hit, digits=1) if hit else pct(summary.get('hit_rate'))} "
                     "(50 % = chance)")
        p, how = second_end_to_prediction(live.get("hops") or {})
        if p:
            met = float(p["p99_ms"]) <= DEADLINE_MS
            verdict = "<span class='ok'>within</span>" if met else "<span class='bad'>over</span>"
            items.append(f"<b>Second end → prediction</b>: p50 {float(p['p50_ms']):.1f} ms, p99 "
                         f"{float(p['p99_ms']):.1f} ms — {verdict} the {DEADLINE_MS:.0f} ms deadline "
                         f"<span class='muted'>({esc(how)}, n = {p.get('n')})</span>")
        c = summary.get("counters") or {}
        items.append(f"<b>Data path</b>: {c.get('gaps', 0)} gaps, {c.get('resyncs', 0)} resyncs, "
                     f"{c.get('late', 0)} late events, {c.get('skipped_ticks', 0)} skipped ticks, "
                     f"{c.get('fallback', 0)} fallback predictions, {c.get('errors', 0)} errors")
    cls = "headline" if ok else "headline failed"
    return f"<div class='{cls}'><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>"


def stage(doc: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for s in doc.get("stages") or []:
        if s.get("name") == name:
            return dict(s.get("summary") or {})
    return None


def ruler_rows(train: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(predictor, its interval dict of r2/mae/hit_rate) in the order the page shows them."""
    iv = (train.get("metrics") or {}).get("intervals") or {}
    rows: list[tuple[str, dict[str, Any]]] = []
    oracle = (train.get("oracle") or {}).get("oracle")
    if oracle:
        rows.append(("oracle (best possible)", oracle))
    if iv.get("model"):
        rows.append(("model (MLP)", iv["model"]))
    names = {"ridge": "ridge regression", "predict_zero": "predict zero", "last_1s_return": "last 1-s return"}
    for key, value in (iv.get("baselines") or {}).items():
        rows.append((names.get(key, key), value))
    if iv.get("shuffled_labels_ridge"):
        rows.append(("control: shuffled labels", iv["shuffled_labels_ridge"]))
    return rows


def model_section(train: Mapping[str, Any], ruler_plot: str | None) -> str:
    parts = ["<h2>Model against its ruler</h2>"]
    rows = ruler_rows(train)
    if not rows:
        return parts[0] + "<p>No evaluation was recorded.</p>"
    parts.append(table(["predictor", "R² [95 % CI]", "hit rate [95 % CI]", "MAE, bp [95 % CI]"], [
        [esc(name), ci_text(d.get("r2")), ci_text(d.get("hit_rate"), digits=1),
         ci_text(d.get("mae"), scale=1e4, digits=3, unit="")] for name, d in rows]))
    iv = (train.get("metrics") or {}).get("intervals") or {}
    diff = (iv.get("model_vs_ridge") or {}).get("r2_difference")
    method = iv.get("method") or {}
    notes = []
    if diff:
        notes.append(f"Model R² − ridge R²: {ci_text(diff)}.")
    if method:
        notes.append(f"Intervals: {esc(method.get('kind'))} over blocks of {method.get('block_s')} s "
                     f"(the 10-s labels overlap), {method.get('resamples')} resamples.")
    parts.append(f"<p class='muted'>{' '.join(notes)}</p>")
    if ruler_plot:
        parts.append(figure(ruler_plot, "Test R² of each predictor with its 95 % interval"))
    regimes = (train.get("metrics") or {}).get("by_regime") or []
    if regimes:
        parts.append("<h3>By regime</h3>")
        parts.append(table(["regime", "rows", "R² [95 % CI]", "hit rate [95 % CI]", "MAE, bp [95 % CI]"], [
            [f"{esc(r['kind'])}: {esc(r['regime'])}", str(r["n"]), ci_text(r.get("r2")),
             ci_text(r.get("hit_rate"), digits=1), ci_text(r.get("mae"), scale=1e4, digits=3, unit="")]
            for r in regimes]))
    return "".join(parts)


def figure(src: str, caption: str) -> str:
    return (f"<figure><img src='{esc(src)}' alt='{esc(caption)}'><figcaption>{esc(caption)}</figcaption>"
            "</figure>")


def live_section(live: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    parts = ["<h2>Live</h2>"]
    summary = live.get("summary") or {}
    if "predictions" in plots:
        parts.append(figure(plots["predictions"], "Live predictions and realized 10-s returns (basis points)"))
    hops = live.get("hops") or {}
    if hops:
        parts.append(table(["hop", "events", "p50 ms", "p90 ms", "p99 ms", "max ms"], [
            [esc(name), str(p.get("n", 0)), *(fmt("", p.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))]
            for name, p in hops.items()]))
    if "latency" in plots:
        parts.append(figure(plots["latency"], "Latency per hop (p50/p90/p99, log scale) and the 100 ms deadline"))
    if summary:
        parts.append(table(["live figure", "value"], [[esc(k), esc(v)] for k, v in kv_rows(summary)], numeric_from=2))
    return "".join(parts)


def card_section(doc: Mapping[str, Any], training_plot: str | None) -> str:
    train = stage(doc, "train") or {}
    features = stage(doc, "features") or {}
    card = train.get("card") or {}
    rows_info = train.get("rows") or {}
    rows = [
        ("model", f"{train.get('name', '?')} {train.get('version', '')}"),
        ("data span", f"{card.get('data_first', '?')} → {card.get('data_last', '?')}"),
        ("rows", ", ".join(f"{k} {v}" for k, v in rows_info.items()) or "?"),
        ("label", "10-s forward log return of the "
                  + _LABEL_MID.get(str(card.get("label_mid")), f"{card.get('label_mid', '?')} mid")),
        ("feature schema hash", str(features.get("schema_hash", "?"))),
        ("features", str(card.get("features", "?"))),
        ("training", f"best epoch {train.get('best_epoch', '?')}, {fmt('', train.get('train_seconds'))} s"),
        ("stored at", str(train.get("uri", "?"))),
    ]
    parts = ["<h2>Model card</h2>", table(["", ""], [[esc(a), esc(b)] for a, b in rows], numeric_from=2)]
    if training_plot:
        parts.append(figure(training_plot, "Training curve: Huber loss per epoch"))
    return "".join(parts)


def stages_section(doc: Mapping[str, Any]) -> str:
    rows = []
    for s in doc.get("stages") or []:
        ok = "<span class='ok'>yes</span>" if s.get("ok") else "<span class='bad'>no</span>"
        detail = "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in kv_rows(s.get("summary") or {}))
        if s.get("error"):
            detail += f"<br><span class='bad'>{esc(s['error'])}</span>"
        rows.append([esc(s.get("name")), ok, fmt("", s.get("seconds")), esc(s.get("started")), detail])
    head = ["stage", "ok", "seconds", "started (UTC)", "what it did"]
    return "<h2>Stages</h2>" + table(head, rows, numeric_from=99)


def settings_section(doc: Mapping[str, Any]) -> str:
    rows = []
    for title in ("plan", "market", "wiring"):
        rows += [[esc(f"{title} · {k}"), esc(v)] for k, v in kv_rows(doc.get(title) or {})]
    return "<h2>Run settings</h2>" + table(["setting", "value"], rows, numeric_from=99)


def page(doc: Mapping[str, Any], plots: Mapping[str, str], summary_file: str) -> str:
    ok = bool(doc.get("ok"))
    title = "btcpipe run — succeeded" if ok else f"btcpipe run — FAILED at {doc.get('failed_stage')}"
    train = stage(doc, "train")
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        headline(doc),
    ]
    if train is not None:
        parts.append(model_section(train, plots.get("ruler")))
    if doc.get("live"):
        parts.append(live_section(doc["live"], plots))
    if train is not None:
        parts.append(card_section(doc, plots.get("training")))
    parts.append(stages_section(doc))
    parts.append(settings_section(doc))
    parts.append(f"<p class='muted'>Everything above is in <code>{esc(summary_file)}</code>; "
                 "<code>btcpipe report RUN_DIR</code> rebuilds this page from it.</p></body></html>")
    return "\n".join(parts)
