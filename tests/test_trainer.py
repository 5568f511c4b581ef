"""The loop every generator trainer shares (``robustbench_cgn.trainer.Trainer``), on a toy
trainer: checkpoints on the way and at the end, a killed run resumed to the same weights as an
uninterrupted one, its log without the lost iterations, a foreign configuration refused. The
domains' trainers are tested on real models in ``tests/plugins``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from robustbench_cgn.errors import ConfigError
from robustbench_cgn.trainer import Trainer, config_difference


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    iterations: int = 12
    lr: float = 0.1
    checkpoint_every: int = 5
    sample_every: int = 4
    log_every: int = 3
    keep_checkpoints: int = 2


class ToyTrainer(Trainer):
    """Fits w to 3.0 by SGD on noisy targets drawn from its own generator."""

    checkpoint_format = "toy/1"
    bookkeeping = frozenset({"iterations", "checkpoint_every", "sample_every", "log_every"})

    def __init__(self, config, out_dir, resume=True):
        self.config = config
        super().__init__(out_dir)
        self.w = torch.zeros(1)
        self.rng = torch.Generator().manual_seed(0)
        self.samples = []
        self.resume(resume)

    def train_step(self):
        target = 3.0 + 0.1 * torch.randn(1, generator=self.rng)
        self.w -= self.config.lr * 2 * (self.w - target)
        self.iteration += 1
        return {"loss": float((self.w - target) ** 2)}

    def state(self):
        return {
            "format": self.checkpoint_format,
            "iteration": self.iteration,
            "w": self.w.clone(),
            "rng": self.rng.get_state(),
            "config": dataclasses.asdict(self.config),
        }

    def load_state(self, ckpt):
        self.check_resumable(ckpt["config"], dataclasses.asdict(self.config))
        self.w, self.iteration = ckpt["w"].clone(), int(ckpt["iteration"])
        self.rng.set_state(ckpt["rng"])

    def sample(self, label, *, final):
        self.samples.append((label, final))
        return {"w": float(self.w)}

    def summary_fields(self, samples):
        return {"sampled_w": None if samples is None else samples["w"]}


def log_records(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_a_run_logs_samples_and_checkpoints_on_the_way_and_at_the_end(tmp_path):
    trainer = ToyTrainer(ToyConfig(), tmp_path)
    summary = trainer.run()
    assert summary["iteration"] == summary["iterations_run"] == 12 and summary["finished"]
    assert abs(summary["sampled_w"] - 3.0) < 0.3
    assert trainer.samples == [
        ("it00000004", False),
        ("it00000008", False),
        ("it00000012_final", True),
    ]
    assert [it for it, _ in trainer.checkpoints.numbered()] == [10, 12]  # keep 2 of 5, 10, 12
    records = log_records(tmp_path)
    assert records[0] == {"event": "start", "iteration": 0}
    assert [r["iteration"] for r in records if r["event"] == "losses"] == [3, 6, 9, 12]


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    whole = ToyTrainer(ToyConfig(), tmp_path / "whole")
    whole.run()
    first = ToyTrainer(ToyConfig(), tmp_path / "killed")
    first.run(stop_after=7)  # checkpoints at 5 and (end of the call) 7
    first.log.write({"event": "losses", "iteration": 8})  # logged after the last checkpoint
    again = ToyTrainer(ToyConfig(), tmp_path / "killed")
    assert again.resumed_from == again.checkpoints.iteration_path(7) and again.iteration == 7
    summary = again.run()
    assert summary["iterations_run"] == 5 and torch.equal(again.w, whole.w)
    records = log_records(tmp_path / "killed")
    resumes = [r for r in records if r["event"] == "resume"]
    assert resumes == [{"event": "resume", "iteration": 7, "checkpoint": str(again.resumed_from)}]
    losses = [r["iteration"] for r in records if r["event"] == "losses"]
    assert losses == sorted(set(losses))  # the lost iteration 8 was dropped, none twice


def test_a_finished_run_draws_no_new_samples_unless_asked(tmp_path):
    ToyTrainer(ToyConfig(), tmp_path).run()
    done = ToyTrainer(ToyConfig(), tmp_path)
    summary = done.run()
    assert summary["iterations_run"] == 0 and summary["sampled_w"] is None and not done.samples


def test_a_checkpoint_of_another_configuration_is_refused_bookkeeping_is_not(tmp_path):
    ToyTrainer(ToyConfig(), tmp_path).run(stop_after=5)
    longer = ToyTrainer(ToyConfig(iterations=20, log_every=2), tmp_path)
    assert longer.iteration == 5  # more iterations, other logging: the same training
    with pytest.raises(ConfigError, match=r"different configuration .*'lr': \(0\.1, 0\.5\)"):
        ToyTrainer(ToyConfig(lr=0.5), tmp_path)
    fresh = ToyTrainer(ToyConfig(lr=0.5), tmp_path, resume=False)
    assert fresh.iteration == 0


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    trainer = ToyTrainer(ToyConfig(keep_checkpoints=3), tmp_path)
    trainer.run(stop_after=10)  # checkpoints 5 and 10
    trainer.checkpoints.iteration_path(10).write_bytes(b"torn")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint .*ckpt_00000010"):
        again = ToyTrainer(ToyConfig(keep_checkpoints=3), tmp_path)
    assert again.iteration == 5


def test_config_difference_ignores_bookkeeping_and_tuple_versus_list():
    theirs = {"betas": [0.5, 0.999], "lr": 0.1, "iterations": 5}
    mine = {"betas": (0.5, 0.999), "lr": 0.2, "iterations": 9}
    assert config_difference(theirs, mine, {"iterations"}) == {"lr": (0.1, 0.2)}
