"""Every ``--set`` key of every built-in component, given a value of the wrong type or out of
its declared range, ends in one line before anything runs and stores nothing (issue 20)."""

from __future__ import annotations

import dataclasses
import time
import typing

import pytest

from robustbench_cgn.cli import main
from robustbench_cgn.config import field_range
from robustbench_cgn.errors import CGNBenchError
from robustbench_cgn.plugin_manager import load_plugins
from robustbench_cgn.runner import Runner, RunRequest
from robustbench_cgn.settings import resolve_paths
from robustbench_cgn.store import ResultsStore

REGISTRIES = load_plugins(autoload=False).registries
KINDS = {"generator": "generators", "classifier": "classifiers", "benchmark": "benchmarks"}


def _components():
    """``(section, entry, options dataclass)``: every component's Config, and every trainable
    generator's Training (section ``training``: ``cgnbench train-generator --set``)."""
    for section, kind in KINDS.items():
        for entry in REGISTRIES.by_kind(kind).list("*"):
            yield section, entry, entry.cls.Config
            if section == "generator" and entry.cls.Training is not None:
                yield "training", entry, entry.cls.Training


def _first_task(entry) -> str:
    return next(t.name for t in REGISTRIES.tasks.list("*") if entry.cls.supports(t.task))


def _combination(section: str, name: str, store: ResultsStore) -> list[str] | None:
    """``run`` arguments that plan a run with this component (no overrides), or ``None``."""
    runner = Runner(load_plugins(autoload=False), store, resolve_paths(), None)
    generators = [e.name for e in REGISTRIES.generators.list("*")]
    benchmarks = [e.name for e in REGISTRIES.benchmarks.list("*")]
    for benchmark in [name] if section == "benchmark" else benchmarks:
        for generator in [name] if section == "generator" else ["original", *generators]:
            request = RunRequest(
                generator=generator,
                benchmark=benchmark,
                classifier=name if section == "classifier" else None,
                device="cpu",
            )
            try:
                runner.assemble(request)
            except CGNBenchError:
                continue
            args = ["run", "-g", generator, "-b", benchmark, "--device", "cpu"]
            return args + (["-c", name] if section == "classifier" else [])
    return None


def _bad_values(field: dataclasses.Field, annotation) -> list[tuple[str, str]]:
    """``(value, what the message must say)`` for a field: a wrong type, and each side of its
    declared range."""
    origin = typing.get_origin(annotation)
    if annotation in (int, float):
        bad = [("not-a-number", "expected")]
        declared = field_range(field)
        if declared is not None:
            step = 1 if annotation is int else 1e-3
            for bound, outside in (
                (declared.min, lambda b: b - step),
                (declared.max, lambda b: b + step),
                (declared.above, lambda b: b),
                (declared.below, lambda b: b),
            ):
                if bound is not None:
                    value = outside(bound)
                    bad.append((str(int(value) if annotation is int else value), "must be"))
        return bad
    if annotation is bool:
        return [("maybe", "expected true/false")]
    if origin is typing.Literal:
        return [("not-a-choice", "expected one of")]
    if origin is tuple:
        args = typing.get_args(annotation)
        if args and args[0] is int:
            return [("a,b,c", "expected an integer")]
    return []  # free text (names, paths, weights): checked where it is used


def _matrix():
    for section, entry, config in _components():
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            for value, message in _bad_values(field, hints[field.name]):
                yield pytest.param(
                    section, entry.name, field.name, value, message,
                    id=f"{section}:{entry.name}.{field.name}={value}",
                )  # fmt: skip


MATRIX = list(_matrix())


def test_every_numeric_option_declares_a_range_that_holds_its_default():
    undeclared = []
    for section, entry, config in _components():
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            if hints[field.name] not in (int, float):
                continue
            declared = field_range(field)
            if declared is None:
                undeclared.append(f"{section} {entry.name}.{field.name}")
            else:
                assert declared.problem(field.default) is None, (entry.name, field.name)
    assert undeclared == []
    assert len(MATRIX) > 100  # the matrix below covers every key it can break


@pytest.fixture(scope="module")
def combinations(tmp_path_factory):
    """Valid ``run`` arguments per component, found once (planned against a scratch store)."""
    found = {}
    store = ResultsStore(tmp_path_factory.mktemp("scratch") / "r.sqlite")

    def get(section: str, name: str) -> list[str] | None:
        if (section, name) not in found:
            found[(section, name)] = _combination(section, name, store)
        return found[(section, name)]

    yield get
    store.close()


@pytest.mark.parametrize(("section", "name", "key", "value", "message"), MATRIX)
def test_bad_values_are_one_line_before_anything_runs(
    section, name, key, value, message, combinations, capsys, _isolated_home
):
    if section == "training":
        entry = REGISTRIES.generators.get(name)
        args = ["train-generator", "-g", name, "--task", _first_task(entry), "--device", "cpu"]
    else:
        args = combinations(section, name)
    assert args is not None, f"no benchmark plans a run with {section} {name}"
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        main(["--no-autoload", *args, "-q", "--set", f"{section}.{key}={value}"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exited.value.code == 2 and len(lines) == 1, err
    assert repr(key) in lines[0] and message in lines[0], lines[0]
    assert elapsed < 5.0
    assert not (_isolated_home / "runs").exists()
    assert not (_isolated_home / "results.sqlite").exists() or _no_runs(_isolated_home)


def _no_runs(home) -> bool:
    import sqlite3

    return sqlite3.connect(home / "results.sqlite").execute(
        "SELECT count(*) FROM runs"
    ).fetchone() == (0,)
