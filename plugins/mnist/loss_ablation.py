"""CGN loss ablation on MNIST (the paper's Table 2 idea, the reproduction's edge-loss study).

Each ablation point switches one generator loss off (adversarial, binary mask, style) or
keeps all of them (``full``), each with and without the reproduction's edge loss. A point
is a :class:`~.training.TrainConfig`; its trained weights are scored like any CGN: mask
statistics and shape agreement (``gen-quality-*``) and downstream OOD accuracy (``c-mnist``
...). Everything is resumable: trainings resume from their checkpoints, runs are skipped when
finished.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .training import TrainConfig

LOSS_SWITCHES: dict[str, dict] = {
    "full": {},
    "no-adversarial": {"lambda_adv": 0.0},
    "no-binary": {"lambda_binary": 0.0},
    "no-style": {"style_weights": (0.0, 0.0, 0.0, 0.0)},
}
EDGE_LAMBDA = 0.1  # the reproduction's value for colored/wildlife, used for every variant
BENCHMARK_OF_VARIANT = {"colored": "c-mnist", "double-colored": "dc-mnist", "wildlife": "w-mnist"}


@dataclass(frozen=True)
class AblationPoint:
    losses: str  # a key of LOSS_SWITCHES
    edge: bool

    @property
    def name(self) -> str:
        return f"{self.losses}{'+edge' if self.edge else ''}"

    def train_config(self, variant: str, iterations: int, seed: int = 0) -> TrainConfig:
        """The variant's reference CGN config with this point's losses switched."""
        base = TrainConfig(model="cgn", variant=variant, iterations=iterations, seed=seed)
        base = base.resolved()
        changes = dict(LOSS_SWITCHES[self.losses])
        changes["lambda_edge"] = EDGE_LAMBDA if self.edge else 0.0
        return dataclasses.replace(base, **changes)


def ablation_points(losses: list[str] | None = None, edge: str = "both") -> list[AblationPoint]:
    """Points for the given loss switches (default all) and edge setting (on/off/both)."""
    chosen = losses or list(LOSS_SWITCHES)
    unknown = [name for name in chosen if name not in LOSS_SWITCHES]
    if unknown:
        raise ValueError(f"unknown ablation {unknown}; choose from {', '.join(LOSS_SWITCHES)}")
    edges = {"off": [False], "on": [True], "both": [False, True]}[edge]
    return [AblationPoint(name, e) for name in chosen for e in edges]
