"""Run identity: one hash over everything that determines a run's results."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    """What a run is: components with resolved configs, the training mix and the seed.

    ``*_identity`` hold facts such as data provenance and weight hashes that components report
    before running (see ``Component.identity``).
    """

    generator: str
    generator_version: str
    generator_config: dict[str, Any]
    generator_identity: dict[str, Any]
    classifier: str
    classifier_version: str
    classifier_config: dict[str, Any]
    classifier_identity: dict[str, Any]
    benchmark: str
    benchmark_version: str
    benchmark_config: dict[str, Any]
    benchmark_identity: dict[str, Any]
    mix: str
    seed: int
    precision: str = "fp32"

    def as_dict(self) -> dict[str, Any]:
        return {
            "generator": {
                "name": self.generator,
                "version": self.generator_version,
                "config": self.generator_config,
                "identity": self.generator_identity,
            },
            "classifier": {
                "name": self.classifier,
                "version": self.classifier_version,
                "config": self.classifier_config,
                "identity": self.classifier_identity,
            },
            "benchmark": {
                "name": self.benchmark,
                "version": self.benchmark_version,
                "config": self.benchmark_config,
                "identity": self.benchmark_identity,
            },
            "mix": self.mix,
            "seed": self.seed,
            **self._precision(),
        }

    def _precision(self) -> dict[str, str]:
        """The autocast precision; fp32 (the default) is left out so that the identities of
        runs made before precision was part of it stay the same."""
        return {} if self.precision == "fp32" else {"precision": self.precision}

    @property
    def run_id(self) -> str:
        return run_identity(self.as_dict())

    def training_id(self, task: str) -> str:
        """Hash of what determines the trained classifier: generator, classifier, mix, seed,
        task and data source, but not the benchmark. Runs that differ only in the benchmark
        (``c-mnist`` and ``gradcam-iou-c-mnist``) share one training."""
        return run_identity(
            {
                "task": task,
                "generator": self.as_dict()["generator"],
                "classifier": self.as_dict()["classifier"],
                "mix": self.mix,
                "seed": self.seed,
                "source": self.data_source,
                **self._precision(),
            }
        )

    @property
    def data_source(self) -> str:
        """A short label of where the data came from; leaderboards never mix sources."""
        sources = [
            str(part["source"])
            for part in (self.generator_identity, self.benchmark_identity)
            if isinstance(part, dict) and part.get("source")
        ]
        return "+".join(dict.fromkeys(sources)) or "-"


def canonical_json(payload: Any) -> str:
    """JSON with sorted keys and no whitespace: equal payloads give equal text."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def run_identity(payload: Any) -> str:
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]
