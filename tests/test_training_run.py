"""The run folder of the resumable trainers (``robustbench_cgn.training_run``): checkpoint
names, newest/pruning order, the resume-safe log, the loss window; and the helpers the two
training commands share (``robustbench_cgn.commands``)."""

from __future__ import annotations

import json
import types

import pytest
import torch
from rich.console import Console

from robustbench_cgn.commands import comma_floats, run_with_progress, speed_text
from robustbench_cgn.errors import CGNBenchError, ConfigError, DataNotFoundError
from robustbench_cgn.training_run import (
    TrainingLog,
    checkpoint_files,
    checkpoint_path,
    latest_checkpoint,
    latest_loadable_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    write_checkpoint,
)


def touch_checkpoints(run_dir, *iterations):
    for it in iterations:
        path = checkpoint_path(run_dir, it)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def names(paths):
    return [p.name for p in paths]


def records(log: TrainingLog) -> list[dict]:
    return [json.loads(line) for line in log.path.read_text().splitlines()]


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_names_are_zero_padded_iterations(tmp_path):
    assert checkpoint_path(tmp_path, 42) == tmp_path / "checkpoints" / "ckpt_00000042.pt"


def test_files_sort_by_iteration_and_skip_what_is_not_a_checkpoint(tmp_path):
    assert checkpoint_files(tmp_path) == [] and latest_checkpoint(tmp_path) is None
    touch_checkpoints(tmp_path, 1000, 20, 300)
    folder = tmp_path / "checkpoints"
    (folder / "ckpt_123456789.pt").write_bytes(b"x")  # wider than the padding: still a number
    (folder / "ckpt_final.pt").write_bytes(b"x")
    (folder / ".ckpt_00000400.pt.tmp").write_bytes(b"x")  # an unfinished atomic write
    (folder / "notes.txt").write_text("")
    found = checkpoint_files(tmp_path)
    assert [it for it, _ in found] == [20, 300, 1000, 123456789]
    assert latest_checkpoint(tmp_path) == folder / "ckpt_123456789.pt"


def test_prune_keeps_the_newest_by_iteration(tmp_path):
    touch_checkpoints(tmp_path, 9, 10, 100, 11)  # 100 > 11 although "100" < "11" as text
    removed = prune_checkpoints(tmp_path, 2)
    assert names(removed) == ["ckpt_00000009.pt", "ckpt_00000010.pt"]
    assert [it for it, _ in checkpoint_files(tmp_path)] == [11, 100]
    assert prune_checkpoints(tmp_path, 5) == []
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(tmp_path, 0)


def test_prune_spares_the_checkpoint_just_written_below_newer_ones(tmp_path):
    touch_checkpoints(tmp_path, 100, 200, 300)  # 300 unreadable; the run resumed from 100
    spare = checkpoint_path(tmp_path, 150)
    touch_checkpoints(tmp_path, 150)
    prune_checkpoints(tmp_path, 1, spare=spare)
    assert [it for it, _ in checkpoint_files(tmp_path)] == [150, 300]


def test_write_checkpoint_is_loadable_and_prunes(tmp_path):
    for it in (1, 2, 3):
        path = write_checkpoint(tmp_path, it, {"iteration": it, "w": torch.ones(2) * it}, keep=2)
        assert path == checkpoint_path(tmp_path, it)
    assert [it for it, _ in checkpoint_files(tmp_path)] == [2, 3]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.suffix != ".pt"]
    state = torch.load(latest_checkpoint(tmp_path), weights_only=True)
    assert state["iteration"] == 3 and torch.equal(state["w"], torch.full((2,), 3.0))


def test_read_checkpoint_checks_the_format(tmp_path):
    path = write_checkpoint(tmp_path, 7, {"format": "demo/1", "iteration": 7}, keep=1)
    assert read_checkpoint(path, "demo/1")["iteration"] == 7
    with pytest.raises(CGNBenchError, match="is not a demo/2 checkpoint"):
        read_checkpoint(path, "demo/2")
    path.write_bytes(b"torn")
    with pytest.raises(CGNBenchError, match="cannot read demo checkpoint"):
        read_checkpoint(path, "demo/1", "demo checkpoint")
    with pytest.raises(DataNotFoundError, match="training checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt", "demo/1")


def load_or_fail(path):
    if path.read_bytes() == b"bad":
        raise CGNBenchError(f"cannot read {path.name}")
    return path


def test_latest_loadable_falls_back_past_unreadable_newer_ones(tmp_path):
    assert latest_loadable_checkpoint(tmp_path, load_or_fail) is None
    touch_checkpoints(tmp_path, 1, 2, 3)
    checkpoint_path(tmp_path, 3).write_bytes(b"bad")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint .*ckpt_00000003"):
        assert latest_loadable_checkpoint(tmp_path, load_or_fail) == checkpoint_path(tmp_path, 2)


def test_latest_loadable_refuses_a_folder_where_nothing_loads(tmp_path):
    touch_checkpoints(tmp_path, 1, 2)
    for it in (1, 2):
        checkpoint_path(tmp_path, it).write_bytes(b"bad")
    with (
        pytest.warns(UserWarning),
        pytest.raises(CGNBenchError, match="none can be read .*ckpt_00000002.*start afresh"),
    ):
        latest_loadable_checkpoint(tmp_path, load_or_fail)


# ------------------------------------------------------------------------------------- log


def test_log_appends_json_records_and_creates_the_folder(tmp_path):
    log = TrainingLog(tmp_path / "run", log_every=10)
    log.write({"event": "start", "iteration": 0, "betas": (0.5, 0.999), "path": tmp_path})
    log.write({"event": "resume", "iteration": 5})
    assert log.path == tmp_path / "run" / "train_log.jsonl"
    first, second = records(log)
    assert first == {"event": "start", "iteration": 0, "betas": [0.5, 0.999], "path": str(tmp_path)}
    assert second["event"] == "resume"


def test_truncate_drops_later_records_and_a_torn_last_line(tmp_path):
    log = TrainingLog(tmp_path, log_every=1)
    log.truncate_after(3)  # no log yet: nothing happens
    assert not log.path.exists()
    for it in (0, 2, 4, 3, 6):
        log.write({"event": "losses", "iteration": it})
    log.write({"event": "note"})  # no iteration: counts as 0, kept
    with open(log.path, "a") as handle:
        handle.write('{"event": "losses", "itera')  # killed mid-write
    log.truncate_after(3)
    assert [r.get("iteration") for r in records(log)] == [0, 2, 3, None]
    assert log.path.read_text().endswith("\n")
    log.write({"event": "resume", "iteration": 3})  # appends on a clean line
    assert records(log)[-1] == {"event": "resume", "iteration": 3}


def test_window_writes_means_every_log_every_iterations(tmp_path):
    log = TrainingLog(tmp_path, log_every=3)
    log.start_window()
    for it in range(1, 8):
        log.add_losses(it, {"a": float(it), "b": 2.0 * it}, episode=it // 2)
    assert log.pending == 1  # iteration 7 waits for the next flush
    last = log.flush_losses(7, episode=3)
    assert log.pending == 0 and log.flush_losses(8) is None  # empty window: no record
    got = records(log)
    assert got[-1] == last
    where = [(r["iteration"], r["episode"], r["n"]) for r in got]
    assert where == [(3, 1, 3), (6, 3, 3), (7, 3, 1)]
    assert [r["losses"] for r in got] == [
        {"a": 2.0, "b": 4.0},
        {"a": 5.0, "b": 10.0},
        {"a": 7.0, "b": 14.0},
    ]
    # the trainers' record layout, extra fields right after the iteration
    assert list(got[0]) == ["event", "iteration", "episode", "n", "losses", "seconds_per_iteration"]
    assert all(r["event"] == "losses" and r["seconds_per_iteration"] >= 0 for r in got)


def test_window_without_extra_fields(tmp_path):
    log = TrainingLog(tmp_path, log_every=2)
    log.add_losses(1, {"g": 1.0})
    log.add_losses(2, {"g": 3.0})
    (record,) = records(log)
    assert list(record) == ["event", "iteration", "n", "losses", "seconds_per_iteration"]
    assert record["losses"] == {"g": 2.0} and record["n"] == 2
    with pytest.raises(ValueError, match="log_every"):
        TrainingLog(tmp_path, log_every=0)


# ------------------------------------------------------------------------ command helpers


def test_comma_floats():
    assert comma_floats(None, None, None) is None
    assert comma_floats(None, None, "1,2.5, -3") == (1.0, 2.5, -3.0)
    option = types.SimpleNamespace(name="style_weights")
    with pytest.raises(ConfigError, match=r"^--style-weights: expected comma-separated numbers"):
        comma_floats(None, option, "1,x")


class FakeTrainer:
    def __init__(self, resumed_from, iteration):
        self.resumed_from, self.iteration, self.on_step = resumed_from, iteration, None

    def run(self, stop_after):
        for _ in range(stop_after):
            self.iteration += 1
            self.on_step(self.iteration, {"loss": 1.0 / self.iteration})
        return {"iteration": self.iteration, "seconds_per_iteration": 0.25}


def test_run_with_progress_announces_a_resume_and_passes_run_arguments(tmp_path):
    console = Console(file=open(tmp_path / "out.txt", "w"), width=120)  # noqa: SIM115
    seen = []
    trainer = FakeTrainer(tmp_path / "ckpt_00000004.pt", 4)
    summary = run_with_progress(
        trainer,
        console,
        "fake",
        total=10,
        status=lambda losses: seen.append(losses) or f"loss={losses['loss']:.2f}",
        stop_after=3,
    )
    console.file.close()
    assert summary["iteration"] == 7 and [s["loss"] for s in seen] == [1 / 5, 1 / 6, 1 / 7]
    assert "resuming from" in (tmp_path / "out.txt").read_text()
    assert speed_text(summary) == ", 0.250 s/iteration"
    assert speed_text({"seconds_per_iteration": None}) == ""
