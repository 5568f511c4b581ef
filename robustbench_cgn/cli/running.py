"""``cgnbench run`` and ``cgnbench show``."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .. import distributed
from ..config import did_you_mean, load_config_file, parse_set_options
from ..data.download import go_offline
from ..device import DEVICE_CHOICES, PRECISION_CHOICES, resolve_device
from ..errors import CGNBenchError, ConfigError
from ..render import format_value
from ..runner import MIX_CHOICES, Runner, RunRequest
from .app import App
from .group import cli


def merge_overrides(file_config: dict[str, Any], sets: tuple[str, ...]) -> dict[str, dict]:
    overrides: dict[str, dict] = {}
    for section in ("generator", "classifier", "benchmark"):
        overrides[section] = dict(file_config.get(section, {}))
    for section, values in parse_set_options(sets).items():
        overrides[section].update(values)
    return overrides


#: The ``[run]`` table's keys: what each must be (a check returning an error, or None).
def _name(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty name (a string)"


def _one_of(choices: tuple[str, ...]):
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


def _seeds(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(type(v) is int and v >= 0 for v in value)
    return None if ok else "a non-empty list of integers >= 0, e.g. [0, 1, 2]"


def _workers(value: Any) -> str | None:
    return None if type(value) is int and value >= 0 else "an integer >= 0"


RUN_KEYS = {
    "generator": _name,
    "benchmark": _name,
    "classifier": _name,
    "seeds": _seeds,
    "mix": _one_of(MIX_CHOICES),
    "device": _one_of(DEVICE_CHOICES),
    "precision": _one_of(PRECISION_CHOICES),
    "workers": _workers,
}


def check_run_table(table: dict[str, Any], path: str) -> None:
    """Every key of a config file's ``[run]`` table is known and valid, before anything runs:
    one line naming the key (and the closest known one) otherwise."""
    for key, value in table.items():
        if key not in RUN_KEYS:
            raise ConfigError(
                f"config file {path}: unknown key {key!r} in [run]"
                + did_you_mean(key, RUN_KEYS)
                + f"; known: {', '.join(RUN_KEYS)}"
            )
        problem = RUN_KEYS[key](value)
        if problem is not None:
            raise ConfigError(f"config file {path}: [run] {key} = {value!r} must be {problem}")


def _run_option(run_table: dict[str, Any], name: str, given: Any, default: Any) -> Any:
    if given is not None and given != ():
        return given
    return run_table.get(name, default)


@cli.command("run")
@click.option("-g", "--generator", help="Generator of the training data (see `cgnbench list`).")
@click.option("-b", "--benchmark", help="Benchmark to score on.")
@click.option("-c", "--classifier", help="Classifier to train and score; default: the benchmark's.")
@click.option(
    "-s",
    "--seed",
    "seeds",
    type=click.IntRange(min=0),
    multiple=True,
    help="Seed; repeat for several runs (default 0).",
)
@click.option(
    "--mix",
    type=click.Choice(MIX_CHOICES),
    default=None,
    help="Train on the generated data alone (default) or on original + generated.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default=None,
    help="auto (CUDA if available), cpu or cuda.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISION_CHOICES),
    default=None,
    help="Autocast precision [default: fp32]: auto (bf16 where the hardware has it: CUDA, "
    "AMX / AVX-512 BF16 CPUs; else fp32), fp32, bf16, fp16 (CUDA). Part of the run identity.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML file with [run], [generator], [classifier], [benchmark] tables.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one option, e.g. --set classifier.epochs=2; repeatable.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Local data root (torchvision layout); also $CGNBENCH_DATA.",
)
@click.option(
    "--workers", type=click.IntRange(min=0), default=None, help="DataLoader worker processes."
)
@click.option(
    "--offline",
    is_flag=True,
    help="Never touch the network (same as CGNBENCH_OFFLINE=1): a file that is not local is "
    "one line naming it, its URL and the `cgnbench fetch` command that gets it.",
)
@click.option("--force", is_flag=True, help="Rerun even if this exact run already finished.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (same as cgnbench -q run).")
@click.option(
    "--launcher",
    type=click.Choice(distributed.LAUNCHER_CHOICES),
    default="none",
    help="torchrun: start --nproc processes of this command with torchrun (one node; DDP "
    "training, sharded evaluation). Runs started by torchrun itself need no option.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Processes for --launcher torchrun (default: one per GPU, else 1).",
)
@click.pass_obj
def run_command(
    app: App,
    generator,
    benchmark,
    classifier,
    seeds,
    mix,
    device,
    precision,
    config_file,
    sets,
    data_dir,
    workers,
    offline,
    force,
    quiet,
    launcher,
    nproc,
) -> None:
    """Train a classifier on a generator's data and score it on a benchmark.

    Each (generator, classifier, benchmark, config, seed, data, weights) combination is one
    run with a stable id: rerunning a finished run does nothing (use --force), and an
    interrupted run resumes where it stopped.

    Under torchrun (`torchrun --nproc-per-node N -m robustbench_cgn run ...`, or
    `--launcher torchrun --nproc N`) the processes train with DDP and split the evaluation;
    rank 0 records the results.
    """
    if launcher == "torchrun" and not distributed.launched_by_torchrun():
        args = app.argv if app.argv is not None else tuple(sys.argv[1:])
        sys.exit(distributed.relaunch(nproc or distributed.default_nproc(), args))
    if nproc is not None and launcher != "torchrun":
        raise ConfigError("--nproc needs --launcher torchrun")
    if quiet:
        app.quiet = True
    if offline:
        go_offline()
    file_config = load_config_file(config_file) if config_file else {}
    run_table = file_config.get("run", {})
    check_run_table(run_table, config_file)
    generator = _run_option(run_table, "generator", generator, None)
    benchmark = _run_option(run_table, "benchmark", benchmark, None)
    if not generator or not benchmark:
        raise ConfigError("run needs --generator and --benchmark (or them in the [run] table)")
    seeds = _run_option(run_table, "seeds", seeds, (0,))
    request_args = dict(
        generator=generator,
        benchmark=benchmark,
        classifier=_run_option(run_table, "classifier", classifier, None),
        mix=_run_option(run_table, "mix", mix, "generated"),
        overrides=merge_overrides(file_config, sets),
        device=_run_option(run_table, "device", device, "auto"),
        precision=_run_option(run_table, "precision", precision, "fp32"),
        num_workers=_run_option(run_table, "workers", workers, 0),
        force=force,
    )
    with distributed.session(resolve_device(request_args["device"])) as dist:
        if not dist.is_main:
            app.quiet = True  # rank 0 reports progress and results
        runner = Runner(
            app.plugins,
            app.store if dist.is_main else None,
            app.paths(data_dir),
            app.progress,
            distributed=dist,
        )
        _run_seeds(app, runner, seeds, request_args, dist.is_main)


def _run_seeds(app: App, runner: Runner, seeds, request_args: dict[str, Any], report: bool) -> None:
    summary = Table(title="runs", title_justify="left")
    for column in ("run id", "seed", "status", "metrics"):
        summary.add_column(column)
    for seed in seeds:
        with warnings_once(app, show=report):
            outcome = runner.run(RunRequest(seed=seed, **request_args))
        if not report:
            continue
        if outcome.status == "skipped":
            status = "already complete (use --force to rerun)"
            metrics = app.store.metrics_frame().query("run_id == @outcome.run_id and key == ''")
            values = {row.metric: row.value for row in metrics.itertuples()}
        else:
            status = "complete (resumed)" if outcome.resumed else "complete"
            values = {m.name: m.value for m in outcome.metrics if m.key == ""}
        text = ", ".join(f"{name}={format_value(value)}" for name, value in values.items())
        summary.add_row(outcome.run_id, str(seed), status, text)
    if report:
        app.console.print(summary)


@contextlib.contextmanager
def warnings_once(app: App, show: bool = True) -> Iterator[None]:
    """Show each distinct warning of a run once, as one yellow line, the moment it is raised
    (a data fallback is announced before the training it affects, not after); repeats (data
    fallbacks say the same thing at every lookup) are dropped; ``show=False`` swallows them
    (ranks other than 0)."""
    seen: set[str] = set()

    def print_once(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if show and text not in seen:
            seen.add(text)
            app.err_console.print(f"[yellow]warning:[/] {text}", highlight=False)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.showwarning = print_once
        yield


@cli.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show_command(app: App, run_id: str, as_json: bool) -> None:
    """Show one run (a unique prefix of its id is enough): spec, provenance, metrics, files."""
    matches = app.store.find_runs(run_id)
    if not matches:
        raise CGNBenchError(f"no run with id {run_id!r} in {app.store.path}")
    if len(matches) > 1:
        ids = ", ".join(r.run_id for r in matches[:5])
        raise CGNBenchError(f"run id prefix {run_id!r} is ambiguous: {ids}")
    record = matches[0]
    metrics = app.store.metrics_frame(complete_only=False).query("run_id == @record.run_id")
    files = run_files(record)
    if as_json:
        payload = {
            **{k: v for k, v in vars(record).items()},
            "metrics": json.loads(metrics.drop(columns=["extra"]).to_json(orient="records")),
            "files": files,
        }
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    console = app.console
    console.print(
        f"[bold]run {record.run_id}[/]  status: {record.status}  attempts: {record.attempts}"
    )
    console.print(
        f"{record.generator} -> {record.classifier} on {record.benchmark}"
        f" (mix {record.mix}, seed {record.seed}, data {record.data_source})"
    )
    if record.error:
        console.print(f"[red]last error:[/] {record.error}")
    table = Table(title="metrics", title_justify="left")
    for column in ("metric", "key", "value", "n", "protocol"):
        table.add_column(column)
    for row in metrics.itertuples():
        table.add_row(row.metric, row.key, format_value(row.value), str(row.n), row.protocol)
    console.print(table)
    console.print("[bold]spec[/]")
    console.print_json(data=record.spec)
    console.print("[bold]provenance[/]")
    console.print_json(data=record.provenance)
    console.print(f"[bold]files[/] (run folder {record.workdir}):")
    for name in files:
        console.print(f"  {name}")


def run_files(record) -> list[str]:
    """The run folder's files and, as ``checkpoints/<name>``, the training checkpoints it used
    (they live in a folder shared by runs with the same training, see ``provenance``)."""
    files: list[str] = []
    if record.workdir:
        root = Path(record.workdir)
        files += sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    shared = (record.provenance or {}).get("checkpoint_dir")
    if shared and Path(shared).is_dir():
        root = Path(shared)
        files += sorted(
            f"checkpoints/{p.relative_to(root)}" for p in root.rglob("*") if p.is_file()
        )
    return files
