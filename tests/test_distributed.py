"""`cgnbench run` under torchrun: sharded evaluation, DDP training, rank-0-only writes.

The multi-process tests start 2 CPU processes with the gloo backend through
``python -m torch.distributed.run --standalone`` (a free rendezvous port each time), on the
example toy plugin and on tiny in-memory data, with one thread per process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import EXAMPLE_PLUGIN_DIR, run_cli

from robustbench_cgn import distributed
from robustbench_cgn.checkpoint import Checkpointer
from robustbench_cgn.distributed import SINGLE_PROCESS, Distributed

WORKER = Path(__file__).with_name("distributed_worker.py")
TOY_RUN = ("run", "-g", "toy-blobs", "-b", "toy-shift")
TIMEOUT = 240


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGNBENCH_PLUGINS="cgnbench_toy",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(EXAMPLE_PLUGIN_DIR), env.get("PYTHONPATH", "")) if p
        ),
        OMP_NUM_THREADS="1",
        **extra,
    )
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    return env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def _cgnbench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "robustbench_cgn", *args], env)


def _torchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "robustbench_cgn",
            *args,
        ],
        env,
    )


def _runs(store: Path) -> list[dict]:
    with sqlite3.connect(store) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM runs")]


def _metrics(store: Path) -> dict[tuple[str, str], tuple[float, int]]:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT name, key, value, n FROM metrics").fetchall()
    return {(name, key): (value, n) for name, key, value, n in rows}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> tuple[Path, dict]:
    """The toy run in one process: its folder (``single.sqlite`` + ``runs/``) and metrics."""
    home = tmp_path_factory.mktemp("single")
    _cgnbench(
        "-q", "--results", str(home / "single.sqlite"), *TOY_RUN, env=_env(CGNBENCH_HOME=str(home))
    )
    return home, _metrics(home / "single.sqlite")


# -- one process: the helpers are the identity ----------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 37, 64, 65, 1000])
@pytest.mark.parametrize("world_size", [2, 3, 8])
@pytest.mark.parametrize("batch_size", [1, 8, 256])
def test_shards_cover_every_item_once_in_whole_batches(n, world_size, batch_size):
    shards = [Distributed(r, world_size).shard_range(n, batch_size) for r in range(world_size)]
    assert [i for shard in shards for i in shard] == list(range(n))
    for shard in shards:
        assert shard.start % batch_size == 0 or shard.start == n  # whole batches: same batching


def test_batches_split_into_disjoint_parts():
    batch = torch.randperm(64)[:13]
    parts = [Distributed(r, 4).shard_batch(batch) for r in range(4)]
    assert torch.equal(torch.cat(parts), batch)
    assert sorted(len(p) for p in parts) == [3, 3, 3, 4]
    assert SINGLE_PROCESS.shard_batch(batch) is batch


def test_one_process_helpers_change_nothing():
    model = torch.nn.Linear(3, 2)
    assert SINGLE_PROCESS.wrap(model) is model
    output, target = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1])
    assert torch.equal(
        SINGLE_PROCESS.batch_loss(F.cross_entropy, output, target, 5),
        F.cross_entropy(output, target),
    )
    assert SINGLE_PROCESS.sum_over_ranks(1.5, 3) == (1.5, 3)
    assert SINGLE_PROCESS.broadcast("x") == "x"
    assert SINGLE_PROCESS.all_gather_object(4) == [4]
    assert SINGLE_PROCESS.on_main(lambda a: a + 1, 1) == 2
    assert SINGLE_PROCESS.shard_range(10, 3) == range(10)
    with SINGLE_PROCESS.main_first():
        pass
    assert distributed.current() is SINGLE_PROCESS


def test_ranks_other_than_0_do_not_write(tmp_path):
    """A checkpoint save (and figures) on rank 1 leaves rank 0's files alone."""
    other = Distributed(rank=1, world_size=2)
    Checkpointer(tmp_path, distributed=other).save("model", {"x": torch.ones(1)})
    assert not (tmp_path / "model.pt").exists()
    Checkpointer(tmp_path, distributed=Distributed(0, 2)).save("model", {"x": torch.ones(1)})
    assert (tmp_path / "model.pt").exists()
    scratch = other.scratch_dir("artifacts")
    assert tmp_path not in scratch.parents
    other.cleanup()
    assert not scratch.exists()


def test_launcher_options_are_not_passed_on():
    args = ["-q", "run", "-g", "x", "--launcher", "torchrun", "--nproc=2", "-b", "y"]
    command = distributed.torchrun_command(2, args)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    assert command[6:] == ["-m", "robustbench_cgn", "-q", "run", "-g", "x", "-b", "y"]


def test_nproc_needs_the_launcher(toy_plugin_env):
    result = run_cli(*TOY_RUN, "--nproc", "2", check=False)
    assert result.returncode == 2
    assert "--nproc needs --launcher torchrun" in result.stderr


# -- two processes ------------------------------------------------------------------------------


def test_core_helpers_in_two_processes(tmp_path):
    """predict_dataset / predict_images sharded: bit-for-bit the one-process predictions; the
    MNIST CNN and a mid-network BatchNorm trained with DDP: equal to one process up to float
    summation order; only rank 0 writes (see distributed_worker.py)."""
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(WORKER),
            str(tmp_path),
        ],
        _env(),
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["is_main"] for r in ranks] == [True, False]
    for found in ranks:
        assert all(found["evaluation"].values()), found["evaluation"]
        training = found["training"]
        assert training["same_keys"]
        assert training["num_batches_tracked"] == 8  # 2 epochs x 4 global batches
        assert training["max_weight_diff"] < 1e-5, training
        assert training["history_loss_diff"] < 1e-5, training
        assert training["history_acc_diff"] == 0.0, training
        assert found["batchnorm_diff"] < 1e-5, found
        for batch_size, ensemble in found["ensemble"].items():
            assert ensemble["moved"] > 1e-3, (batch_size, ensemble)  # it did train
            assert ensemble["max_weight_diff"] < 1e-5, (batch_size, ensemble)
            assert ensemble["history_equal"], (batch_size, ensemble)
        assert found["helpers"] == {
            "synced": True,
            "on_main": True,
            "raised": "from rank 0",
            "same_random_state": True,
        }
    assert ranks[0] == {**ranks[1], "rank": 0, "is_main": True, "artifacts_in_scratch": False}
    assert ranks[1]["artifacts_in_scratch"]
    assert (tmp_path / "ddp-run" / "checkpoints" / "mnist-cnn.pt").is_file()
    assert (tmp_path / "ddp-run" / "artifacts" / "training_history.json").is_file()


def test_sharded_evaluation_gives_the_single_process_metrics(single_run):
    """Same trained weights (the checkpoint folder is shared), evaluated by 2 processes."""
    home, single_metrics = single_run
    store = home / "torchrun.sqlite"
    out = _torchrun("-q", "--results", str(store), *TOY_RUN, env=_env(CGNBENCH_HOME=str(home)))
    assert _metrics(store) == single_metrics  # exact: value and n of every metric
    (run,) = _runs(store)
    assert run["status"] == "complete"
    assert json.loads(run["provenance"])["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert out.stdout.count(run["run_id"]) == 1  # the summary comes from rank 0 only


def test_ddp_training_run_writes_one_run(single_run, tmp_path):
    _, single_metrics = single_run
    store = tmp_path / "results.sqlite"
    _torchrun("-q", "--results", str(store), *TOY_RUN, env=_env(CGNBENCH_HOME=str(tmp_path)))
    (run,) = _runs(store)
    assert run["status"] == "complete"
    metrics = _metrics(store)
    assert metrics.keys() == single_metrics.keys()
    for name, (value, n) in metrics.items():
        # DDP = one process up to float summation order (the trained weights differ by ~1e-7):
        # at most 5 of the 1000 test images may flip.
        assert n == single_metrics[name][1]
        assert abs(value - single_metrics[name][0]) <= 0.5, (name, value, single_metrics[name])
    trained = list((tmp_path / "runs" / "trained").glob("*/toy-linear.pt"))
    assert len(trained) == 1
    epochs = (tmp_path / "runs" / run["run_id"] / "epochs.log").read_text().split()
    assert epochs == ["1", "2", "3", "4", "5"]  # written by rank 0 alone


def test_launcher_torchrun_starts_the_processes(tmp_path):
    store = tmp_path / "results.sqlite"
    out = _cgnbench(
        "--results",
        str(store),
        *TOY_RUN,
        "-q",
        "--set",
        "classifier.epochs=2",
        "--launcher",
        "torchrun",
        "--nproc",
        "2",
        env=_env(CGNBENCH_HOME=str(tmp_path)),
    )
    (run,) = _runs(store)
    assert run["status"] == "complete"
    assert json.loads(run["provenance"])["distributed"]["world_size"] == 2
    assert out.stdout.count(run["run_id"]) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_through_the_c10d_rendezvous_give_the_single_process_metrics(single_run):
    """Multi-node as a cluster does it: two torchrun agents (one per "node", one process each)
    meet at a c10d rendezvous endpoint, here both on this host. Same trained weights (shared
    checkpoint folder), so the sharded evaluation must equal the single process exactly."""
    home, single_metrics = single_run
    store = home / "two-nodes.sqlite"
    endpoint = f"127.0.0.1:{_free_port()}"
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "two-nodes",
                "-m",
                "robustbench_cgn",
                "-q",
                "--results",
                str(store),
                *TOY_RUN,
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(CGNBENCH_HOME=str(home)),
        )
        for _ in range(2)
    ]
    try:
        outputs = [agent.communicate(timeout=TIMEOUT) for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
    assert [agent.returncode for agent in agents] == [0, 0], outputs
    assert _metrics(store) == single_metrics
    (run,) = _runs(store)
    assert json.loads(run["provenance"])["distributed"] == {"world_size": 2, "backend": "gloo"}
