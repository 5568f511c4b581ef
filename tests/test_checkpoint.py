"""The one checkpoint mechanism (``robustbench_cgn.checkpoint``): a run folder's numbered
checkpoints (names, newest/pruning order, fallback past unreadable ones, format check); the
named ones and their distributed behaviour are tested in ``test_distributed.py``."""

from __future__ import annotations

import pytest
import torch

from robustbench_cgn.checkpoint import Checkpointer, read_checkpoint
from robustbench_cgn.errors import CGNBenchError, DataNotFoundError


def touch_checkpoints(run_dir, *iterations):
    for it in iterations:
        path = checkpoint_path(run_dir, it)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def checkpoint_path(run_dir, iteration):
    return Checkpointer.of_run(run_dir).iteration_path(iteration)


def checkpoint_files(run_dir):
    return Checkpointer.of_run(run_dir).numbered()


def latest_checkpoint(run_dir):
    return Checkpointer.of_run(run_dir).latest()


def prune_checkpoints(run_dir, keep, spare=None):
    return Checkpointer.of_run(run_dir).prune(keep, spare=spare)


def write_checkpoint(run_dir, iteration, state, keep):
    return Checkpointer.of_run(run_dir).save_iteration(iteration, state, keep)


def latest_loadable_checkpoint(run_dir, load):
    return Checkpointer.of_run(run_dir).latest_loadable(load)


def names(paths):
    return [p.name for p in paths]


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


def test_named_and_numbered_checkpoints_share_the_run_folder(tmp_path):
    checkpoints = Checkpointer.of_run(tmp_path)
    checkpoints.save("classifier", {"epoch": 3})
    checkpoints.save_iteration(5, {"iteration": 5}, keep=1)
    assert checkpoints.load("classifier") == {"epoch": 3}
    assert [it for it, _ in checkpoints.numbered()] == [5]  # a named one is not numbered
    assert checkpoints.folder == tmp_path / "checkpoints"
