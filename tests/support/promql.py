"""The checker that keeps alert rules and dashboards honest about metric names: every series a PromQL expression
names must be one ``btcpipe.infra.metrics.Metrics`` exports (with the suffix its type gives it), every label it
matches or
groups by must exist on those metrics, and a matched label value must be one the metric's help lists when it lists
any. The checker's own tests are here; test_alert_rules.py and test_deploy_grafana.py apply it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from btcpipe.infra.metrics import Metrics

# Labels Prometheus itself attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
BUILTIN_SERIES = {"up"}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


@dataclass(frozen=True)
class Family:
    name: str
    kind: str
    labels: frozenset[str]
    help: str


def metric_families() -> dict[str, Family]:
    """Series name as it appears in PromQL -> the family that exports it."""
    out: dict[str, Family] = {}
    for collector in vars(Metrics()).values():
        if isinstance(collector, MetricWrapperBase):
            family = Family(
                collector._name,  # type: ignore[attr-defined]
                collector._type,  # type: ignore[attr-defined]
                frozenset(collector._labelnames),  # type: ignore[attr-defined]
                collector._documentation,  # type: ignore[attr-defined]
            )
            for suffix in _SUFFIXES[family.kind]:
                out[family.name + suffix] = family
    return out


def documented_values(help_text: str) -> dict[str, set[str]]:
    """Label values a help text lists, like 'Inference ticks by outcome (predicted, fallback, skipped_deadline)'."""
    return {
        label: set(values.split(", "))
        for label, values in re.findall(r"\bby ([a-z_]+) \(([a-z_]+(?:, [a-z_]+)+)\)", help_text)
    }


_SERIES_REF = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]+)\s*\)")


def check_expression(expr: str, families: dict[str, Family] | None = None) -> list[str]:
    """Problems with the metric names and labels an expression uses (empty when it is consistent)."""
    families = metric_families() if families is None else families
    problems: list[str] = []
    used_labels: set[str] = set(TARGET_LABELS)
    # Identifiers that are series: btcpipe_* and the built-in ``up``; PromQL keywords and functions are ignored.
    for match in _SERIES_REF.finditer(expr):
        name, selector = match.group(1), match.group(2)
        if not (name.startswith("btcpipe_") or (name in BUILTIN_SERIES and selector)):
            continue
        family = families.get(name)
        if family is None and name not in BUILTIN_SERIES:
            problems.append(f"unknown series {name}")
            continue
        labels = set(family.labels) if family else set()
        if family and family.kind == "histogram" and name.endswith("_bucket"):
            labels.add("le")
        used_labels |= labels
        for label, op, value in _MATCHER.findall(selector or ""):
            if label in TARGET_LABELS or label == "__name__":
                continue
            if label not in labels:
                problems.append(f"{name} has no label {label!r}")
                continue
            allowed = documented_values(family.help).get(label) if family else None
            if allowed is not None and not value.startswith("$"):
                values = value.split("|") if op in ("=~", "!~") else [value]
                problems += [
                    f"{name}{{{label}}}: {v!r} is not one of {sorted(allowed)}" for v in values if v not in allowed
                ]
    for grouping in _GROUPING.findall(re.sub(r'"[^"]*"', '""', expr)):
        for label in (g.strip() for g in grouping.split(",")):
            if label and label not in used_labels:
                problems.append(f"grouping by {label!r}, which none of the expression's metrics has")
    for name, label in _LABEL_VALUES.findall(expr):
        family = families.get(name)
        if family is None:
            problems.append(f"unknown series {name}")
        elif label not in family.labels:
            problems.append(f"{name} has no label {label!r}")
    return problems
