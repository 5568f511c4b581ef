"""Render a leaderboard frame as a rich table, CSV, Markdown or JSON."""

from __future__ import annotations

import json
import math

import pandas as pd
from rich.table import Table

from .leaderboard import REFERENCE, metric_columns

FORMATS = ("table", "csv", "markdown", "json")


def format_value(mean: float, se: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    digits = 2 if abs(mean) >= 1 else 3
    text = f"{mean:.{digits}f}"
    if se is not None and not (isinstance(se, float) and math.isnan(se)):
        text += f" ± {se:.{digits}f}"
    return text


def _split_config(label: object) -> dict[str, str]:
    """``"generator.n=10000, generator.no_cfs=1"`` -> ``{"generator.n": "10000", ...}``."""
    if not isinstance(label, str) or label in ("", "default"):
        return {}
    return dict(part.split("=", 1) for part in label.split(", ") if "=" in part)


def display_rows(group: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header and text cells of one benchmark's rows. Settings that differ between the
    measured rows (a sweep's parameters) get one column each."""
    metrics = metric_columns(group)
    measured = group[group["kind"] != REFERENCE]
    show_data = measured["data_source"].nunique() > 1 or (
        not measured.empty and (measured["data_source"] != "-").any()
    )
    settings = [_split_config(label) for label in group["config"]]
    setting_keys = sorted({key for parsed in settings for key in parsed})
    header = ["generator", "classifier", "mix"]
    header += ["data"] if show_data else []
    header += setting_keys
    header += ["seeds", *metrics]
    rows, is_reference = [], []
    for (_, row), parsed in zip(group.iterrows(), settings, strict=True):
        reference = row["kind"] == REFERENCE
        first = f"ref · {row['source']}" if reference else str(row["generator"])
        cells = [first, str(row["classifier"]), str(row["mix"])]
        cells += [str(row["data_source"])] if show_data else []
        cells += [parsed.get(key, "") for key in setting_keys]
        seeds = row.get("seeds")
        cells.append("" if seeds is None or pd.isna(seeds) else str(int(seeds)))
        for metric in metrics:
            cells.append(format_value(row.get(metric), row.get(f"{metric}_se")))
        rows.append(cells)
        is_reference.append(reference)
    return header, rows, is_reference


def rich_tables(board: pd.DataFrame, titles: dict[str, str] | None = None) -> list[Table]:
    tables = []
    for bench, group in board.groupby("benchmark", sort=True):
        header, rows, references = display_rows(group)
        title = (titles or {}).get(bench, bench)
        table = Table(title=title, caption="ref · = published reference row, not measured here")
        for name in header:
            table.add_column(
                name,
                justify="right" if name in metric_columns(group) or name == "seeds" else "left",
            )
        for cells, reference in zip(rows, references, strict=True):
            table.add_row(*cells, style="dim italic" if reference else None)
        tables.append(table)
    return tables


def to_markdown(board: pd.DataFrame, titles: dict[str, str] | None = None) -> str:
    parts = []
    for bench, group in board.groupby("benchmark", sort=True):
        header, rows, references = display_rows(group)
        frame = pd.DataFrame(rows, columns=header)
        parts.append(
            f"## {(titles or {}).get(bench, bench)}\n\n"
            + frame.to_markdown(index=False)
            + "\n\nRows starting with `ref ·` are published references, not measured here."
        )
    return "\n\n".join(parts) + "\n"


def to_csv(board: pd.DataFrame) -> str:
    return board.to_csv(index=False)


def to_json(board: pd.DataFrame) -> str:
    records = json.loads(board.to_json(orient="records"))
    return json.dumps(records, indent=2) + "\n"
