"""A training's ``train_log.jsonl`` (``robustbench_cgn.training_log``): JSON records, the
resume-safe truncation, the loss window."""

from __future__ import annotations

import json

import pytest

from robustbench_cgn.training_log import TrainingLog


def records(log: TrainingLog) -> list[dict]:
    return [json.loads(line) for line in log.path.read_text().splitlines()]


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
