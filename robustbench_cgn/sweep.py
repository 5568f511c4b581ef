"""Sweeps: the cartesian product of generators x classifiers x benchmarks x seeds x settings.

Every grid point is an ordinary run (same identity, store and resume rules as
``cgnbench run``), so a sweep is idempotent: rerunning it skips the points that finished and
resumes an interrupted one. Points can also be written out as one ``cgnbench run`` command
per line, for a scheduler to run anywhere.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import ConfigError

SECTIONS = ("generator", "classifier", "benchmark")


def parse_grid(options: Sequence[str]) -> dict[str, list[str]]:
    """``["generator.no_cfs=1,5,10"]`` -> ``{"generator.no_cfs": ["1", "5", "10"]}``."""
    grid: dict[str, list[str]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name or section not in SECTIONS:
            raise ConfigError(
                f"--grid {option!r}: expected SECTION.KEY=V1,V2,... with SECTION one of "
                f"{', '.join(SECTIONS)}"
            )
        items = [value.strip() for value in values.split(",") if value.strip()]
        if not items:
            raise ConfigError(f"--grid {option!r} lists no values")
        if key.strip() in grid:
            raise ConfigError(f"--grid {key.strip()!r} given twice")
        grid[key.strip()] = items
    return grid


@dataclass(frozen=True)
class SweepPoint:
    generator: str
    classifier: str | None
    benchmark: str
    seed: int
    settings: dict[str, str] = field(default_factory=dict)  # "section.key" -> value

    def overrides(self, base: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
        """``base`` (from ``--set``/``--config``) with this point's settings on top."""
        merged = {section: dict(values) for section, values in base.items()}
        for key, value in self.settings.items():
            section, name = key.split(".", 1)
            merged.setdefault(section, {})[name] = value
        return merged

    def run_args(self, base_args: Sequence[str] = ()) -> list[str]:
        """The arguments of the equivalent ``cgnbench run`` (from ``run`` on)."""
        args = ["run", "-g", self.generator, "-b", self.benchmark]
        args += ["-c", self.classifier] if self.classifier else []
        args += ["-s", str(self.seed), *base_args]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        return args

    def command(self, base_args: Sequence[str] = ()) -> str:
        """The equivalent ``cgnbench run`` command line."""
        return shlex.join(["cgnbench", *self.run_args(base_args)])


def expand(
    generators: Sequence[str],
    classifiers: Sequence[str | None],
    benchmarks: Sequence[str],
    seeds: Sequence[int],
    grid: Mapping[str, Sequence[str]],
) -> list[SweepPoint]:
    """All grid points, benchmark-major (runs sharing a trained classifier stay together)."""
    if not generators or not benchmarks:
        raise ConfigError("a sweep needs at least one generator and one benchmark")
    keys = list(grid)
    points = []
    for generator, classifier, seed, values, benchmark in itertools.product(
        generators,
        classifiers or [None],
        seeds or [0],
        itertools.product(*(grid[k] for k in keys)),
        benchmarks,
    ):
        settings = dict(zip(keys, values, strict=True))
        points.append(SweepPoint(generator, classifier, benchmark, seed, settings))
    return points
