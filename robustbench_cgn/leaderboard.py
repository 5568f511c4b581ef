"""Leaderboards: runs aggregated over seeds (mean +- standard error), beside published rows.

Rows are generator x classifier x training mix (x data source x config variant, so results
on different data or settings are never averaged together); columns are a benchmark's
metrics. Only the overall value of each metric (empty key) is shown; per-head or per-class
values stay in ``cgnbench export``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from .identity import canonical_json

ROW_KEYS = ["generator", "classifier", "mix", "data_source", "config"]
MEASURED, REFERENCE, IMPORTED = "measured", "reference", "imported"


@dataclass(frozen=True)
class MainMetric:
    name: str
    higher_is_better: bool = True


def _standard_error(values: pd.Series) -> float:
    count = values.count()
    return float(values.std(ddof=1) / math.sqrt(count)) if count > 1 else float("nan")


def _flatten(prefix: str, value: object, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:  # strings as they are (no JSON quotes in a table cell), other values as JSON
        out[prefix] = value if isinstance(value, str) else canonical_json(value)


def config_labels(specs: Mapping[str, Mapping]) -> dict[str, str]:
    """A readable label per run of what distinguishes its config from the other runs'.

    Only settings that vary between the given runs are named (``generator.config.n=1000``),
    so runs that differ only by seed share a label, and a sweep parameter becomes a column.
    """
    flat: dict[str, dict[str, str]] = {}
    for run_id, spec in specs.items():
        values: dict[str, str] = {}
        for section in ("generator", "classifier", "benchmark"):
            part = spec.get(section, {})
            _flatten(
                section,
                {
                    "config": part.get("config", {}),
                    "identity": part.get("identity", {}),
                    "version": part.get("version"),
                },
                values,
            )
        values["precision"] = str(spec.get("precision", "fp32"))  # left out of fp32 specs
        flat[run_id] = values
    keys = sorted({key for values in flat.values() for key in values})
    varying = [k for k in keys if len({values.get(k) for values in flat.values()}) > 1]
    labels = {}
    for run_id, values in flat.items():
        parts = [f"{k.replace('.config.', '.')}={values.get(k, '-')}" for k in varying]
        labels[run_id] = ", ".join(parts) or "default"
    return labels


def aggregate(metrics: pd.DataFrame, specs: Mapping[str, Mapping]) -> pd.DataFrame:
    """Long frame: one row per (benchmark, row keys, metric) with mean, se and seed count."""
    overall = metrics[metrics["key"] == ""].copy()
    if overall.empty:
        return pd.DataFrame(
            columns=[
                "benchmark",
                *ROW_KEYS,
                "metric",
                "mean",
                "se",
                "seeds",
                "n",
                "protocol",
                "higher_is_better",
            ]
        )
    labels: dict[str, str] = {}
    # settings are compared among runs of the same components: other generators have other
    # config schemas, and their differences are already in the generator column
    for _, group in overall.groupby(["benchmark", "generator", "classifier"]):
        run_ids = group["run_id"].unique()
        labels.update(config_labels({run_id: specs[run_id] for run_id in run_ids}))
    overall["config"] = overall["run_id"].map(labels)
    grouped = overall.groupby(["benchmark", *ROW_KEYS, "metric"], dropna=False, sort=False)
    return grouped.agg(
        mean=("value", "mean"),
        se=("value", _standard_error),
        seeds=("seed", "nunique"),
        n=("n", "max"),
        protocol=("protocol", "first"),
        higher_is_better=("higher_is_better", "first"),
    ).reset_index()


def build_leaderboard(
    metrics: pd.DataFrame,
    specs: Mapping[str, Mapping],
    references: pd.DataFrame | None,
    main_metrics: Mapping[str, MainMetric],
    *,
    benchmark: str | None = None,
) -> pd.DataFrame:
    """The wide leaderboard: one row per result row or reference, metric columns
    ``<metric>`` (mean) and ``<metric>_se``; sorted by each benchmark's main metric."""
    long = aggregate(metrics, specs)
    frames = []
    for bench, group in long.groupby("benchmark", sort=True):
        # groupby keeps only the row-key combinations that runs have (pivot_table with
        # dropna=False would emit their cartesian product) and keeps NaN keys
        wide = (
            group.groupby([*ROW_KEYS, "metric"], dropna=False, sort=False)[["mean", "se"]]
            .first()
            .unstack("metric")
        )
        table = pd.DataFrame(index=wide.index)
        for metric in sorted(group["metric"].unique()):
            table[metric] = wide[("mean", metric)]
            table[f"{metric}_se"] = wide[("se", metric)]
        seeds = group.groupby(ROW_KEYS, dropna=False)["seeds"].max()
        table.insert(0, "seeds", seeds.reindex(table.index))
        table = table.reset_index()
        # rows scored from imported decision files (``cgnbench import-decisions``) are not
        # measurements of this harness: say so
        kind = table["generator"].map(lambda g: IMPORTED if g == IMPORTED else MEASURED)
        table.insert(0, "source", kind)
        table.insert(0, "kind", kind)
        table.insert(0, "benchmark", bench)
        frames.append(table)
    if references is not None and not references.empty:
        refs = references if benchmark is None else references[references["benchmark"] == benchmark]
        frames.extend(_reference_rows(refs))
    if not frames:
        return pd.DataFrame(columns=["benchmark", "kind", "source", *ROW_KEYS, "seeds"])
    board = pd.concat(frames, ignore_index=True, sort=False)
    if benchmark is not None:
        board = board[board["benchmark"] == benchmark]
    return _sort(board, main_metrics).reset_index(drop=True)


def _reference_rows(references: pd.DataFrame) -> list[pd.DataFrame]:
    frames = []
    keys = ["benchmark", "source", "label", "generator", "classifier", "mix"]
    for (bench, *_), group in references.groupby(keys, sort=False):
        first = group.iloc[0]
        row = {
            "benchmark": bench,
            "kind": REFERENCE,
            "source": f"{first['source']}: {first['label']}",
            "generator": first["generator"] or "-",
            "classifier": first["classifier"] or "-",
            "mix": first["mix"] or "-",
            "data_source": "published",
            "config": "-",
            "seeds": float("nan"),
        }
        for _, ref in group.iterrows():
            row[ref["metric"]] = ref["value"]
        frames.append(pd.DataFrame([row]))
    return frames


def _sort(board: pd.DataFrame, main_metrics: Mapping[str, MainMetric]) -> pd.DataFrame:
    parts = []
    for bench, group in board.groupby("benchmark", sort=True):
        main = main_metrics.get(bench)
        if main is not None and main.name in group.columns:
            group = group.sort_values(
                main.name, ascending=not main.higher_is_better, na_position="last", kind="stable"
            )
        parts.append(group)
    return pd.concat(parts) if parts else board


def metric_columns(board: pd.DataFrame) -> list[str]:
    """The metric (mean) columns of a leaderboard, without the ``_se`` companions."""
    fixed = {"benchmark", "kind", "source", *ROW_KEYS, "seeds"}
    return [
        c
        for c in board.columns
        if c not in fixed and not c.endswith("_se") and board[c].notna().any()
    ]
