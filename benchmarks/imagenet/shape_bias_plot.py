"""The model-vs-human style shape-bias plot: per category, the fraction of shape decisions
(bottom axis) against texture decisions (top axis), one marker series per model or observer
group, and each series' overall shape bias as a vertical line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from robustbench_cgn.figures import pyplot
from robustbench_cgn_plugins.imagenet.tasks.shape_bias import ShapeBias

MARKERS = ("o", "D", "s", "^", "v", "P", "X")


def save_shape_bias_plot(path: Path, scores: Mapping[str, ShapeBias]) -> Path:
    """Write the plot of ``scores`` (label -> :class:`ShapeBias`) to ``path`` (PNG)."""
    plt = pyplot()
    categories = sorted({c for score in scores.values() for c in score.per_category})
    figure, axis = plt.subplots(figsize=(5.5, 0.32 * len(categories) + 1.6), dpi=120)
    rows = list(range(len(categories)))
    for i, (label, score) in enumerate(scores.items()):
        values = [score.per_category.get(c, {}).get("shape_bias", float("nan")) for c in categories]
        colour = f"C{i % 10}"
        axis.scatter(
            values,
            rows,
            marker=MARKERS[i % len(MARKERS)],
            color=colour,
            s=28,
            label=f"{label} ({score.shape_bias:.3f})",
            zorder=3,
        )
        axis.axvline(score.shape_bias, color=colour, linestyle="--", linewidth=1)
    axis.set_yticks(rows, categories)
    axis.invert_yaxis()
    axis.set_xlim(-0.02, 1.02)
    axis.set_xlabel("fraction of 'shape' decisions")
    top = axis.secondary_xaxis("top", functions=(lambda x: 1 - x, lambda x: 1 - x))
    top.set_xlabel("fraction of 'texture' decisions")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.18), ncol=2, frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
