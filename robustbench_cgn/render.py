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


def _setting_rank(key: str) -> tuple[int, str]:
    """Which settings name a row best: a component's own identity (``generator.identity.
    weights``: the zoo tag or file) first, then its config, then deeper provenance, and
    content hashes last (they only repeat what a name already says)."""
    parts = key.split(".")
    if parts[-1].endswith(("sha256", "hash")):
        return 3, key
    if "identity" not in parts:
        return 1, key
    return (0 if len(parts) == 3 else 2), key


def _distinguishing_settings(
    bases: list[tuple[str, ...]], settings: list[dict[str, str]]
) -> list[str]:
    """The fewest settings (in rank order) that tell apart every two rows whose full config
    labels differ. The full label stays in CSV/JSON; a table shows only these columns, so a
    run with the authors' checkpoint and one with a zoo tag read as one ``weights`` column,
    not a dozen identity fields."""
    full = {
        (base, tuple(sorted(parsed.items()))) for base, parsed in zip(bases, settings, strict=True)
    }
    chosen: list[str] = []

    def distinct(keys: list[str]) -> int:
        return len(
            {
                (base, tuple(p.get(k, "") for k in keys))
                for base, p in zip(bases, settings, strict=True)
            }
        )

    for key in sorted({k for parsed in settings for k in parsed}, key=_setting_rank):
        if distinct(chosen) == len(full):
            break
        if distinct([*chosen, key]) > distinct(chosen):
            chosen.append(key)
    return chosen


def _setting_header(key: str, chosen: list[str]) -> str:
    short = key.replace(".identity.", ".")
    clash = any(other != key and other.replace(".identity.", ".") == short for other in chosen)
    return key if clash else short


def _setting_cell(value: str) -> str:
    """Paths by their file name: the directory is in the CSV export."""
    return value.rsplit("/", 1)[-1] if "/" in value and not value.endswith("/") else value


def display_rows(group: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header and text cells of one benchmark's rows. Settings that tell measured rows apart
    (a sweep's parameters, which weights) get one column each."""
    metrics = metric_columns(group)
    measured = group[group["kind"] != REFERENCE]
    show_data = measured["data_source"].nunique() > 1 or (
        not measured.empty and (measured["data_source"] != "-").any()
    )
    settings = [_split_config(label) for label in group["config"]]
    bases = [
        (str(row["generator"]), str(row["classifier"]), str(row["mix"]), str(row["data_source"]))
        for _, row in group.iterrows()
    ]
    setting_keys = _distinguishing_settings(bases, settings)
    header = ["generator", "classifier", "mix"]
    header += ["data"] if show_data else []
    header += [_setting_header(key, setting_keys) for key in setting_keys]
    header += ["seeds", *metrics]
    rows, is_reference = [], []
    for (_, row), parsed in zip(group.iterrows(), settings, strict=True):
        reference = row["kind"] == REFERENCE
        first = f"ref · {row['source']}" if reference else str(row["generator"])
        cells = [first, str(row["classifier"]), str(row["mix"])]
        cells += [str(row["data_source"])] if show_data else []
        cells += [_setting_cell(parsed.get(key, "")) for key in setting_keys]
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
        frame = pd.DataFrame([[_markdown_cell(c) for c in row] for row in rows], columns=header)
        parts.append(
            f"## {(titles or {}).get(bench, bench)}\n\n"
            + frame.to_markdown(index=False)
            + "\n\nRows starting with `ref ·` are published references, not measured here."
        )
    return "\n\n".join(parts) + "\n"


def _markdown_cell(value):
    """A cell that cannot break its table: ``|`` escaped, line breaks made spaces."""
    if not isinstance(value, str):
        return value
    return " ".join(value.split()).replace("|", "\\|") if value.strip() else value


def to_csv(board: pd.DataFrame) -> str:
    return board.to_csv(index=False)


def to_json(board: pd.DataFrame) -> str:
    records = json.loads(board.to_json(orient="records"))
    return json.dumps(records, indent=2) + "\n"
