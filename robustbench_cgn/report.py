"""A self-contained HTML report of some runs: leaderboard rows, metrics, figures, provenance.

Figures are embedded as base64 PNG, so the single file can be mailed or attached as is.
Figures with the same file name in several runs (e.g. ``gradcam_overlays.png`` of an
original-trained and a CGN-trained classifier on the same test images) are shown side by side.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from .leaderboard import MainMetric, build_leaderboard
from .render import display_rows, format_value
from .store import RunRecord

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.ref { color: #777; font-style: italic; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0; } figure img { max-width: 640px; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #444; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
"""


def _label(record: RunRecord) -> str:
    return (
        f"{record.generator} → {record.classifier} on {record.benchmark} "
        f"(mix {record.mix}, seed {record.seed}, run {record.run_id[:8]})"
    )


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def run_figures(record: RunRecord) -> dict[str, Path]:
    """The PNG files in a run's ``artifacts`` folder, by file name."""
    folder = Path(record.workdir or ".") / "artifacts"
    if not record.workdir or not folder.is_dir():
        return {}
    return {path.name: path for path in sorted(folder.glob("*.png"))}


def _leaderboard_html(board: pd.DataFrame) -> str:
    parts = []
    for bench, group in board.groupby("benchmark", sort=True):
        header, rows, references = display_rows(group)
        body = []
        for cells, reference in zip(rows, references, strict=True):
            cls = ' class="ref"' if reference else ""
            body.append(
                f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            )
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        parts.append(
            f"<h3>{html.escape(str(bench))}</h3><table><tr>{head}</tr>{''.join(body)}</table>"
        )
    note = "<p>Grey italic rows (<code>ref ·</code>) are published numbers, not measured here.</p>"
    return "".join(parts) + note


def _metrics_html(metrics: pd.DataFrame) -> str:
    rows = []
    for row in metrics.itertuples():
        rows.append(
            f"<tr><td>{html.escape(row.metric)}</td><td>{html.escape(row.key or '')}</td>"
            f"<td>{format_value(row.value)}</td><td>{row.n}</td>"
            f"<td>{html.escape(str(row.protocol))}</td></tr>"
        )
    head = "<tr><th>metric</th><th>key</th><th>value</th><th>n</th><th>protocol</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def build_report(
    records: Sequence[RunRecord],
    metrics: pd.DataFrame,
    references: pd.DataFrame | None,
    main_metrics: Mapping[str, MainMetric],
    per_class: bool = False,
) -> str:
    """The report's HTML text. ``metrics`` is the store's metrics frame (any superset of the
    runs'); ``per_class`` also lists per-class/per-head metric rows."""
    ids = {record.run_id for record in records}
    ours = metrics[metrics["run_id"].isin(ids)]
    specs = {record.run_id: record.spec for record in records}
    refs = None
    if references is not None:
        refs = references[references["benchmark"].isin({r.benchmark for r in records})]
    board = build_leaderboard(ours, specs, refs, main_metrics)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>cgnbench report</title><style>{STYLE}</style></head><body>",
        "<h1>cgnbench report</h1>",
        f"<p>{len(records)} run(s); generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Leaderboard</h2>",
        _leaderboard_html(board) if not board.empty else "<p>No metrics recorded.</p>",
    ]
    figures = {record.run_id: run_figures(record) for record in records}
    shared = sorted(
        name
        for name in {n for f in figures.values() for n in f}
        if sum(name in f for f in figures.values()) > 1
    )
    if shared:
        out.append("<h2>Side by side</h2>")
        for name in shared:
            cells = [
                _image(figures[r.run_id][name], _label(r))
                for r in records
                if name in figures[r.run_id]
            ]
            out.append(f"<h3>{html.escape(name)}</h3><div class='figures'>{''.join(cells)}</div>")
    for record in records:
        out.append(f"<h2>{html.escape(_label(record))}</h2>")
        out.append(f"<p>status {record.status}, data {html.escape(record.data_source)}</p>")
        rows = ours[ours["run_id"] == record.run_id]
        if not per_class:
            rows = rows[rows["key"] == ""]
        out.append(_metrics_html(rows))
        own = [p for n, p in figures[record.run_id].items() if n not in shared]
        if own:
            out.append("<div class='figures'>" + "".join(_image(p, p.name) for p in own) + "</div>")
        for title, payload in (("spec", record.spec), ("provenance", record.provenance)):
            text = html.escape(json.dumps(payload, indent=2, default=str))
            out.append(f"<details><summary>{title}</summary><pre>{text}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out)
