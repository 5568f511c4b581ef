"""``cgnbench ablate-cgn``: the MNIST CGN loss ablation as one resumable command."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from robustbench_cgn.commands import (
    BadParameter,
    Choice,
    IntRange,
    PathType,
    command,
    option,
    pass_app,
)
from robustbench_cgn.render import format_value
from robustbench_cgn.runner import Runner, RunRequest

from .loss_ablation import BENCHMARK_OF_VARIANT, LOSS_SWITCHES, ablation_points
from .training import VARIANTS, train_generator


@command("ablate-cgn")
@option("--variant", type=Choice(VARIANTS), required=True)
@option("--data-dir", required=True, type=PathType(file_okay=False))
@option("--out", required=True, type=PathType(file_okay=False), help="Trainings go here.")
@option("--vgg-weights", default=None, help="VGG16 features (also $CGNBENCH_VGG16_WEIGHTS).")
@option(
    "--iterations",
    type=int,
    default=2_000,
    show_default=True,
    help="Per training (the reference trains 46,875-56,250).",
)
@option(
    "--losses",
    default=",".join(LOSS_SWITCHES),
    show_default=True,
    help="Comma-separated loss switches to run.",
)
@option("--edge", type=Choice(("off", "on", "both")), default="both", show_default=True)
@option("--n-counterfactuals", type=int, default=10_000, show_default=True)
@option("--classifier-epochs", type=int, default=10, show_default=True)
@option(
    "--quality-samples",
    type=IntRange(min=10),
    default=5_000,
    show_default=True,
    help="Samples the gen-quality benchmark scores per training.",
)
@option("--seed", type=int, default=0, show_default=True)
@pass_app
def ablate_cgn_command(
    app,
    variant,
    data_dir,
    out,
    vgg_weights,
    iterations,
    losses,
    edge,
    n_counterfactuals,
    classifier_epochs,
    quality_samples,
    seed,
) -> None:
    """Train one CGN per loss ablation (each loss off in turn, with and without the edge
    loss), then record for each: mean mask, mask-collapse count, shape agreement
    (gen-quality-*) and downstream OOD accuracy. Rerun to resume; finished parts are skipped.
    See the results with `cgnbench leaderboard -b gen-quality-c-mnist` (and -b c-mnist)."""
    try:
        points = ablation_points([s.strip() for s in losses.split(",") if s.strip()], edge)
    except ValueError as exc:
        raise BadParameter(str(exc), param_hint="--losses") from None
    bench = BENCHMARK_OF_VARIANT[variant]
    runner = Runner(app.plugins, app.store, app.paths(data_dir), app.progress)
    table = Table(title=f"CGN loss ablation on {bench} ({iterations} iterations each)")
    for column in ("ablation", "mask_mean", "collapsed", "shape_agreement", "test_acc"):
        table.add_column(column)
    for point in points:
        folder = Path(out) / point.name
        config = point.train_config(variant, iterations, seed)
        app.console.print(f"[bold]{point.name}[/]: training into {folder}")
        train_generator(config, folder, data_dir=data_dir, vgg_weights=vgg_weights)
        weights = {"weights": str(folder / "generator.pth")}
        quality = runner.run(
            RunRequest(
                generator="cgn",
                benchmark=f"gen-quality-{bench}",
                seed=seed,
                overrides={"generator": weights, "benchmark": {"n_samples": str(quality_samples)}},
            )
        )
        accuracy = runner.run(
            RunRequest(
                generator="cgn",
                benchmark=bench,
                seed=seed,
                overrides={
                    "generator": {**weights, "n_counterfactuals": str(n_counterfactuals)},
                    "classifier": {"epochs": str(classifier_epochs)},
                },
            )
        )
        values = {
            row.metric: row.value
            for run_id in (quality.run_id, accuracy.run_id)
            for row in app.store.metrics_frame()
            .query("run_id == @run_id and key == ''")
            .itertuples()
        }
        table.add_row(
            point.name,
            *(
                format_value(values[m]) if m in values else "-"
                for m in ("mask_mean", "collapsed_classes", "shape_agreement", "test_acc")
            ),
        )
    app.console.print(table)
