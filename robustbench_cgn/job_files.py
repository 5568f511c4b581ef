"""Job files: a sweep written out as commands for a scheduler instead of run here.

Three launchers, each line one grid point (an ordinary ``cgnbench run``, so each job is
idempotent by its run identity and a rerun of a finished job is a no-op):

* ``none``: ``cgnbench run ...`` per line (any job runner, GNU parallel, a shell loop);
* ``torchrun``: ``torchrun ... -m robustbench_cgn run ...`` per line: one node
  (``--standalone``), or several nodes through torchrun's c10d rendezvous at
  ``--rdzv-endpoint HOST:PORT`` (start the same line on every node);
* ``slurm``: an ``sbatch`` array script; array task ``i`` runs grid point ``i`` with ``srun``
  starting one torchrun per node, rendezvous on the job's first node.

Shell words are quoted with :func:`shlex.join`; only the Slurm script's own variables
(``$SLURM_NNODES``, ``$head``, ...) are left for the shell to expand.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError

LAUNCHERS = ("none", "torchrun", "slurm")
MODULE = "robustbench_cgn"  # `python -m robustbench_cgn` is the cgnbench command


@dataclass(frozen=True)
class Launch:
    """How each job starts. ``nproc``: processes (GPUs) per node; ``nnodes``: nodes per job."""

    launcher: str = "none"
    nproc: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT, multi-node torchrun lines only
    gpus: bool = True  # Slurm: request ``nproc`` GPUs per node
    port: int = 29500  # Slurm: rendezvous port on the job's first node

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"unknown launcher {self.launcher!r}; use one of {LAUNCHERS}")
        if self.nproc < 1 or self.nnodes < 1:
            raise ConfigError("--nproc and --nnodes must be at least 1")
        if self.launcher == "none" and (self.nproc > 1 or self.nnodes > 1):
            raise ConfigError("--nproc/--nnodes need --launcher torchrun or slurm")
        if self.launcher == "torchrun" and self.nnodes > 1 and not self.rdzv_endpoint:
            raise ConfigError(
                "multi-node torchrun jobs need --rdzv-endpoint HOST:PORT (a host every node "
                "reaches; torchrun's c10d rendezvous runs there)"
            )


def job_line(run_args: Sequence[str], launch: Launch, job_id: str) -> str:
    """One shell line that runs ``cgnbench <run_args>`` the way ``launch`` says (not Slurm)."""
    if launch.launcher == "none":
        return shlex.join(["cgnbench", *run_args])
    if launch.launcher == "torchrun":
        if launch.nnodes == 1:
            nodes = ["--standalone", "--nnodes", "1"]
        else:
            assert launch.rdzv_endpoint is not None
            nodes = ["--nnodes", str(launch.nnodes), "--rdzv-backend", "c10d"]
            nodes += ["--rdzv-endpoint", launch.rdzv_endpoint, "--rdzv-id", job_id]
        argv = ["torchrun", *nodes, "--nproc-per-node", str(launch.nproc), "-m", MODULE]
        return shlex.join([*argv, *run_args])
    raise ConfigError("Slurm jobs are written as one script: use slurm_script")


def slurm_script(jobs: Sequence[Sequence[str]], launch: Launch, name: str = "cgnbench") -> str:
    """An ``sbatch`` array script running ``cgnbench <jobs[i]>`` as array task ``i``."""
    if not jobs:
        raise ConfigError("no jobs to write")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{len(jobs) - 1}",
        f"#SBATCH --nodes={launch.nnodes}",
        "#SBATCH --ntasks-per-node=1",
        *([f"#SBATCH --gpus-per-node={launch.nproc}"] if launch.gpus else []),
        f"#SBATCH --output={name}-%A_%a.out",
        "# Written by `cgnbench sweep --launcher slurm`; submit with `sbatch THIS_FILE`.",
        "# Every task is an ordinary cgnbench run: resubmitting skips finished runs.",
        "set -euo pipefail",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        (
            'launch=(srun torchrun --nnodes "$SLURM_NNODES" '
            f"--nproc-per-node {launch.nproc} --rdzv-backend c10d "
            f'--rdzv-endpoint "$head:{launch.port}" '
            f'--rdzv-id "$SLURM_ARRAY_JOB_ID-$SLURM_ARRAY_TASK_ID" -m {MODULE})'
        ),
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for index, args in enumerate(jobs):
        lines.append(f'  {index}) "${{launch[@]}}" {shlex.join(list(args))} ;;')
    lines += [
        '  *) echo "no job $SLURM_ARRAY_TASK_ID in this file" >&2; exit 2 ;;',
        "esac",
        "",
    ]
    return "\n".join(lines)
