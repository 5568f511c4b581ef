"""``cgnbench ablate-cgn``: one training per loss switch, scored as ordinary runs, resumable."""

import json
import sqlite3

from conftest import run_cli

from robustbench_cgn_plugins.mnist.loss_ablation import ablation_points


def test_points_switch_one_loss_each():
    points = {p.name: p for p in ablation_points()}
    assert sorted(points) == sorted(
        f"{loss}{edge}"
        for loss in ("full", "no-adversarial", "no-binary", "no-style")
        for edge in ("", "+edge")
    )
    full = points["full"].train_config("colored", 10)
    assert (full.lambda_adv, full.lambda_binary, full.lambda_edge) == (1.0, 0.1, 0.0)
    assert full.style_weights == (0.05, 0.1, 0.01, 0.0)
    assert points["no-binary+edge"].train_config("colored", 10).lambda_edge == 0.1
    assert points["no-style"].train_config("colored", 10).style_weights == (0.0,) * 4
    assert points["no-adversarial"].train_config("wildlife", 10).lambda_adv == 0.0


def test_ablation_command_trains_scores_and_resumes(tmp_path, shared_data, _isolated_home):
    args = [
        "ablate-cgn", "--variant", "colored", "--data-dir", str(shared_data),
        "--out", str(tmp_path / "ablation"), "--iterations", "2",
        "--losses", "no-adversarial,no-style", "--edge", "on",
        "--n-counterfactuals", "300", "--classifier-epochs", "1", "--quality-samples", "500",
    ]  # fmt: skip
    out = run_cli(*args).stdout
    assert "no-adversarial+edge" in out and "no-style+edge" in out
    record = json.loads((tmp_path / "ablation" / "no-style+edge" / "generator.json").read_text())
    assert record["config"]["style_weights"] == [0.0, 0.0, 0.0, 0.0]
    assert record["config"]["lambda_edge"] == 0.1 and record["iterations"] == 2
    database = _isolated_home / "results.sqlite"
    with sqlite3.connect(database) as db:
        runs = db.execute("SELECT benchmark, status, attempts FROM runs").fetchall()
        sizes = db.execute("SELECT n FROM metrics WHERE name = 'mask_mean'").fetchall()
    assert sorted(runs) == sorted(
        [("gen-quality-c-mnist", "complete", 1), ("c-mnist", "complete", 1)] * 2
    )
    assert sizes == [(500,), (500,)]  # --quality-samples reaches the benchmark
    run_cli(*args)  # everything done: trainings and runs are skipped
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT max(attempts) FROM runs").fetchone()[0] == 1
    board = run_cli("leaderboard", "-b", "gen-quality-c-mnist", "-f", "csv").stdout
    # the switched losses label the rows (they differ between the two trainings)
    assert "generator.identity.trained.lambda_adv=0.0" in board
    assert "generator.identity.trained.lambda_adv=1.0" in board
