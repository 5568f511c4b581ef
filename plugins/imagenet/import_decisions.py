"""``cgnbench import-decisions``: score decision files (human observers, published models)
onto the leaderboard.

The files are model-vs-human raw-data CSVs (``subj, session, trial, rt, object_response,
category, condition, imagename``): the human observers' responses in ../raw-data/cue-conflict
of model-vs-human, or a model's decisions as ``cgnbench run -b cue-conflict`` writes them. They
are scored with the same function as a live run and stored as a complete run whose generator is
``imported`` (the leaderboard marks such rows ``imported``), identified by the files' hashes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from robustbench_cgn.commands import Choice, PathType, argument, command, option, pass_app
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.errors import CGNBenchError
from robustbench_cgn.identity import run_identity

from .tasks.shape_bias import metric_results, read_raw_data, score_raw_data

IMPORTED_GENERATOR = "imported"
SUPPORTED_BENCHMARKS = ("cue-conflict",)
PROTOCOL = "cue-conflict: imported decisions (model-vs-human raw data), shape/(shape+texture)"


@command("import-decisions")
@argument("files", nargs=-1, required=True, type=PathType(exists=True, dir_okay=False))
@option("--label", required=True, help="Leaderboard name, e.g. humans or resnet50-mvh.")
@option(
    "-b",
    "--benchmark",
    type=Choice(SUPPORTED_BENCHMARKS),
    default="cue-conflict",
    show_default=True,
)
@pass_app
def import_decisions_command(app: Any, files: tuple[str, ...], label: str, benchmark: str) -> None:
    """Score model-vs-human raw-data CSV FILES (pooled) and store them as an imported row."""
    if not label.strip() or label != " ".join(label.split()):
        raise CGNBenchError(
            f"--label {label!r}: give a non-empty name without line breaks, tabs or "
            "leading/trailing spaces (e.g. humans or resnet50-mvh)"
        )
    started = time.perf_counter()
    paths = [Path(f) for f in files]
    try:
        data = read_raw_data(paths)
        score = score_raw_data(data)
    except ValueError as exc:
        raise CGNBenchError(str(exc)) from None
    hashes = {p.name: sha256_file(p) for p in paths}
    spec = {  # shaped like a run's spec, so leaderboards and `show` read it alike
        "generator": {"name": IMPORTED_GENERATOR, "config": {}, "identity": {"files": hashes}},
        "classifier": {"name": label, "config": {}, "identity": {}},
        "benchmark": {"name": benchmark, "config": {}, "identity": {}},
    }
    run_id = run_identity(spec)
    subjects = sorted(set(data["subj"].astype(str)))
    source = f"model-vs-human raw data ({len(subjects)} subject(s), {len(data)} trials)"
    store = app.store
    store.start_run(
        run_id,
        generator=IMPORTED_GENERATOR,
        classifier=label,
        benchmark=benchmark,
        mix="-",
        seed=0,
        data_source=source,
        spec=spec,
        provenance={"files": {str(p): h for p, h in zip(paths, hashes.values(), strict=True)}},
        workdir="",
        fresh=True,
    )
    results = metric_results(score, PROTOCOL, extra={"subjects": subjects})
    for result in results:
        store.record_metric(
            run_id,
            result,
            higher_is_better=result.name != "texture_fraction",
            main=result.name == "shape_bias",
        )
    store.finish_run(run_id, status="complete", wall_time_s=time.perf_counter() - started)
    print(
        f"{label}: shape bias {score.shape_bias:.3f} over {score.n} conflict trials "
        f"({len(subjects)} subject(s)); stored as run {run_id}"
    )
