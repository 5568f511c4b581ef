"""Job files written by `cgnbench sweep --emit-jobs`: launcher lines, Slurm scripts, --resume."""

import shlex
import shutil
import sqlite3
import subprocess
import sys

import pytest
from conftest import run_cli

from robustbench_cgn.errors import ConfigError
from robustbench_cgn.job_files import Launch, job_line, slurm_script

RUN_ARGS = ["run", "-g", "toy-blobs", "-b", "toy-shift", "-s", "0", "--set", "x.y=a b"]


@pytest.fixture(autouse=True)
def _toy(toy_plugin_env):
    return toy_plugin_env


def test_plain_and_torchrun_lines_quote_every_word():
    assert job_line(RUN_ARGS, Launch(), "id") == (
        "cgnbench run -g toy-blobs -b toy-shift -s 0 --set 'x.y=a b'"
    )
    one_node = shlex.split(job_line(RUN_ARGS, Launch("torchrun", nproc=4), "id"))
    assert one_node[:7] == [
        "torchrun",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "4",
        "-m",
    ]
    assert one_node[7:] == ["robustbench_cgn", *RUN_ARGS]
    multi = shlex.split(
        job_line(RUN_ARGS, Launch("torchrun", nproc=8, nnodes=2, rdzv_endpoint="n0:29400"), "abc")
    )
    assert multi[multi.index("--rdzv-endpoint") + 1] == "n0:29400"
    assert multi[multi.index("--rdzv-id") + 1] == "abc" and "--standalone" not in multi


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"launcher": "mpirun"}, "unknown launcher"),
        ({"launcher": "torchrun", "nproc": 0}, "at least 1"),
        ({"launcher": "none", "nproc": 2}, "need --launcher"),
        ({"launcher": "torchrun", "nnodes": 2}, "rdzv-endpoint"),
    ],
)
def test_launch_settings_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Launch(**kwargs)


def test_slurm_script_is_valid_bash_with_one_case_per_job(tmp_path):
    jobs = [RUN_ARGS, [*RUN_ARGS[:-2], "-c", "toy-linear"]]
    script = slurm_script(jobs, Launch("slurm", nproc=4, nnodes=2))
    assert "#SBATCH --array=0-1" in script and "#SBATCH --nodes=2" in script
    assert "#SBATCH --gpus-per-node=4" in script
    path = tmp_path / "jobs.sbatch"
    path.write_text(script)
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(path)], check=True)
    cases = [line for line in script.splitlines() if line.startswith(("  0)", "  1)"))]
    assert len(cases) == 2
    words = shlex.split(cases[1].split(")", 1)[1].rstrip(" ;"))
    assert words[0] == "${launch[@]}" and words[1:] == jobs[1]
    no_gpu = slurm_script(jobs, Launch("slurm", gpus=False))
    assert "gpus-per-node" not in no_gpu
    with pytest.raises(ConfigError):
        slurm_script([], Launch("slurm"))


SWEEP = [
    "sweep", "-g", "toy-blobs", "-b", "toy-shift", "-s", "0", "-s", "1",
    "--set", "classifier.epochs=2", "--device", "cpu",
]  # fmt: skip


def test_torchrun_job_line_runs_and_resume_leaves_finished_points_out(_isolated_home, tmp_path):
    jobs = tmp_path / "jobs.txt"
    run_cli(*SWEEP, "--emit-jobs", str(jobs), "--launcher", "torchrun", "--nproc", "2")
    lines = jobs.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("torchrun --standalone") for line in lines)
    argv = shlex.split(lines[0])
    assert argv[argv.index("--nproc-per-node") + 1] == "2"
    # run the first job exactly as written (torchrun = python -m torch.distributed.run)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(_isolated_home / "results.sqlite") as db:
        rows = db.execute("SELECT status, provenance FROM runs").fetchall()
    assert len(rows) == 1 and rows[0][0] == "complete" and '"world_size": 2' in rows[0][1]

    out = run_cli(*SWEEP, "--emit-jobs", str(jobs), "--resume").stdout
    assert "1 already complete" in " ".join(out.split())  # rich wraps long lines
    remaining = jobs.read_text().splitlines()
    assert (
        len(remaining) == 1 and remaining[0].startswith("cgnbench run") and " -s 1 " in remaining[0]
    )
    slurm = tmp_path / "jobs.sbatch"
    run_cli(*SWEEP, "--emit-jobs", str(slurm), "--launcher", "slurm", "--nproc", "2")
    text = slurm.read_text()
    assert "#SBATCH --array=0-1" in text and "gpus-per-node" not in text  # --device cpu


def test_launcher_without_a_job_file_is_a_clear_error(_isolated_home):
    result = run_cli(*SWEEP, "--launcher", "slurm", check=False)
    assert result.returncode != 0 and "--emit-jobs" in result.stderr
    assert "Traceback" not in result.stderr
