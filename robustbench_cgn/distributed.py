"""Multi-process runs (``torchrun``): the one place that knows about ranks and process groups.

``cgnbench run`` started by ``torchrun`` (or with ``--launcher torchrun --nproc N``, which
starts ``torchrun`` itself) finds ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` in its environment,
joins a process group (gloo on the CPU, NCCL on ``cuda:LOCAL_RANK``) and hands a
:class:`Distributed` to the runner, which puts it on the run context as ``ctx.distributed``.
Components never talk to ``torch.distributed`` themselves; they use its helpers:

* evaluation: :func:`~robustbench_cgn.evaluation.predict_dataset` (and the image-folder
  predictors the domains build on it) split the dataset into contiguous blocks of whole batches
  (:meth:`Distributed.shard_range`), one per rank, and gather the results to every rank in
  dataset order: every item is evaluated exactly once, in a batch of the same composition as in
  a single-process run, so the metrics are the same;
* training: :meth:`Distributed.wrap` (DistributedDataParallel, BatchNorm synchronised),
  :meth:`Distributed.shard_batch` (this rank's part of a global batch drawn identically on
  every rank) and :meth:`Distributed.batch_loss` (the loss whose all-reduced gradient is the
  gradient of the global batch's mean loss);
* writing: only rank 0 writes the results store, run folders and checkpoints
  (``ctx.is_main``; ``ctx.checkpoints`` saves on rank 0 and loads on rank 0, broadcasting the
  state to the others); :meth:`Distributed.main_first` lets rank 0 fill caches first.

A single process gets :data:`SINGLE_PROCESS`, whose helpers are the identity: code written
for several processes runs unchanged (and bit for bit as before) in one.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from .errors import CGNBenchError

T = TypeVar("T")

LAUNCHER_CHOICES = ("none", "torchrun")
TIMEOUT_ENV = "CGNBENCH_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 7200.0  # rank 0 may fill a cache (generate a training set) while others wait


class Distributed:
    """This process's place among the processes of a run: ``rank`` of ``world_size``."""

    def __init__(
        self, rank: int = 0, world_size: int = 1, local_rank: int = 0, backend: str | None = None
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not within world size {world_size}")
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.backend = backend
        self._scratch: Path | None = None

    def __repr__(self) -> str:
        return (
            f"Distributed(rank={self.rank}, world_size={self.world_size}, "
            f"local_rank={self.local_rank}, backend={self.backend!r})"
        )

    @property
    def enabled(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes results, run folders and checkpoints."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """For the run's provenance."""
        return {"world_size": self.world_size, "backend": self.backend}

    # -- devices --------------------------------------------------------------------------------
    def local_device(self, device: torch.device) -> torch.device:
        """``cuda:LOCAL_RANK`` for a CUDA device when several processes share a node."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    # -- collectives (no-ops in one process) ----------------------------------------------------
    def barrier(self) -> None:
        if not self.enabled:
            return
        if self.backend == "nccl":
            torch.distributed.barrier(device_ids=[self.local_rank])
        else:
            torch.distributed.barrier()

    def broadcast(self, obj: T, src: int = 0) -> T:
        """``obj`` of rank ``src`` on every rank (any picklable object)."""
        if not self.enabled:
            return obj
        box = [obj if self.rank == src else None]
        torch.distributed.broadcast_object_list(box, src=src)
        return box[0]  # type: ignore[return-value]

    def all_gather_object(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def sum_over_ranks(self, *values: T) -> tuple[T, ...]:
        """Each value summed over the ranks (in rank order, so every rank gets the same)."""
        if not self.enabled:
            return values
        per_rank = self.all_gather_object(values)
        return tuple(sum(column[1:], column[0]) for column in zip(*per_rank, strict=True))

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` on rank 0 only and give its result (or raise its exception) on every
        rank: decisions that read shared state (the results store, a checkpoint file)."""
        if not self.enabled:
            return fn(*args, **kwargs)
        outcome: tuple[bool, Any] | None = None
        if self.is_main:
            try:
                outcome = (True, fn(*args, **kwargs))
            except Exception as exc:
                outcome = (False, exc)
        ok, value = self.broadcast(outcome)  # type: ignore[misc]
        if not ok:
            raise value
        return value

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (filling caches: generated training sets, converted
        weights), then the other ranks run it (and find the caches). Afterwards every rank's
        Python / NumPy / torch random state is rank 0's, so later random draws agree."""
        if not self.enabled:
            yield
            return
        if self.is_main:
            try:
                yield
            except BaseException:
                self.broadcast(None)
                raise
            self.broadcast(_rng_state())
            return
        state = self.broadcast(None)
        if state is None:
            raise CGNBenchError(f"rank {self.rank}: rank 0 failed (see its error)")
        yield
        _set_rng_state(state)

    # -- evaluation sharding --------------------------------------------------------------------
    def shard_range(self, n: int, batch_size: int = 1) -> range:
        """This rank's contiguous block of ``range(n)``, made of whole batches of
        ``batch_size`` (the last one may be short): the blocks of all ranks, in rank order,
        cover ``range(n)`` exactly once and batch it exactly as one process would."""
        if not self.enabled:
            return range(n)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        n_batches = -(-n // batch_size)
        first = self.rank * n_batches // self.world_size
        last = (self.rank + 1) * n_batches // self.world_size
        return range(min(first * batch_size, n), min(last * batch_size, n))

    # -- training -------------------------------------------------------------------------------
    def shard_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch (drawn with the same seed on every
        rank): the parts are disjoint, cover the batch and differ in size by at most one."""
        if not self.enabled:
            return indices
        return indices.tensor_split(self.world_size)[self.rank]

    def batch_loss(
        self,
        loss_fn: Callable[..., torch.Tensor],
        output: torch.Tensor,
        target: torch.Tensor,
        global_size: int,
    ) -> torch.Tensor:
        """The loss to backpropagate for this rank's part of a batch of ``global_size`` items:
        ``loss_fn(output, target)`` (a mean) in one process; with DDP, which averages gradients
        over ranks, this rank's summed loss times ``world_size / global_size``, so the
        all-reduced gradient is that of the global batch's mean (an empty part gives zero).
        ``loss_fn`` takes ``reduction=`` (``F.cross_entropy``, ``F.nll_loss``...)."""
        if not self.enabled:
            return loss_fn(output, target)
        summed = loss_fn(output, target, reduction="sum")
        return summed * (self.world_size / global_size)

    def wrap(self, model: nn.Module, *, sync_batchnorm: bool = True) -> nn.Module:
        """``model`` wrapped in DistributedDataParallel when several processes train (the
        parameters are broadcast from rank 0, gradients are averaged over ranks); ``model``
        itself in one process. Call the wrapper for training steps and keep saving
        ``model.state_dict()`` (no ``module.`` prefix). With ``sync_batchnorm`` BatchNorm layers
        normalise with the statistics of the global batch (``nn.SyncBatchNorm`` on CUDA, an
        all-reduce of sums on the CPU), as one process would: they are converted in place and
        behave as plain BatchNorm in eval mode."""
        if not self.enabled:
            return model
        if sync_batchnorm:
            if next(model.parameters()).device.type == "cuda":
                nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                _convert_cpu_sync_batchnorm(model)
        device_ids = [self.local_rank] if self.backend == "nccl" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def average_gradients(self, module: nn.Module) -> None:
        """All-reduce the gradients of ``module`` to their mean over the ranks (a parameter
        without a gradient counts as zero), in one flat collective. For training loops that
        backpropagate several losses per step, where a DistributedDataParallel wrapper would
        need ``find_unused_parameters``; scale each rank's loss as :meth:`scaled_mean` does so
        that the mean is the global batch's gradient. A no-op in one process."""
        if not self.enabled:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for param in params:
            size = param.numel()
            param.grad = flat[offset : offset + size].view_as(param)
            offset += size

    def scaled_mean(self, loss: torch.Tensor, local_size: int, global_size: int) -> torch.Tensor:
        """``loss`` (a mean over ``local_size`` items: this rank's part of a batch, or a chunk
        of it) weighted so that summing the gradients of the parts and averaging them over
        ranks gives the gradient of the mean over all ``global_size`` items of the batch
        (``loss`` times 1.0 for a whole batch in one process)."""
        return loss * (self.world_size * local_size / global_size)

    def sync_module(self, module: nn.Module | None) -> None:
        """Give every rank rank 0's parameters and buffers of ``module`` (after training: a
        classifier that trained without :meth:`wrap` may end slightly different per rank, and
        sharded evaluation must score one model)."""
        if not self.enabled or not isinstance(module, nn.Module):
            return
        state = module.state_dict()
        mine = {key: value.detach().cpu() for key, value in state.items()} if self.is_main else None
        theirs = self.broadcast(mine)
        if not self.is_main:
            module.load_state_dict(theirs)  # type: ignore[arg-type]

    # -- files ----------------------------------------------------------------------------------
    def scratch_dir(self, name: str) -> Path:
        """A private temporary folder of this process (removed at shutdown): where ranks other
        than 0 put files that only rank 0 keeps (``ctx.artifacts_dir``)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"cgnbench-rank{self.rank}-"))
        path = self._scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


SINGLE_PROCESS = Distributed()
_current: Distributed = SINGLE_PROCESS
_owns_group = False  # whether init() created the process group (shutdown() destroys only that)


def current() -> Distributed:
    """The process's :class:`Distributed` (:data:`SINGLE_PROCESS` outside a session)."""
    return _current


def environment() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from the environment torchrun sets, or ``None``."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise CGNBenchError(
            "RANK / WORLD_SIZE / LOCAL_RANK in the environment are not integers"
        ) from None
    return rank, world_size, local_rank


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or environment() is not None


def init(device: torch.device, *, init_method: str | None = None) -> Distributed:
    """Join the process group described by the environment (torchrun's ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; or ``init_method``, e.g.
    ``file://...``) and make it :func:`current`. gloo for CPU runs, NCCL for CUDA runs (each
    process on ``cuda:LOCAL_RANK``). Without those variables, or with a world of one, nothing
    is initialised and :data:`SINGLE_PROCESS` is returned."""
    global _current, _owns_group
    found = environment()
    if found is None or found[1] <= 1:
        _current = SINGLE_PROCESS
        return _current
    rank, world_size, local_rank = found
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise CGNBenchError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): "
                "start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not torch.distributed.is_initialized():
        _owns_group = True
        torch.distributed.init_process_group(
            backend,
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))),
        )
    _current = Distributed(rank, world_size, local_rank, backend)
    return _current


def shutdown(*, destroy: bool = True) -> None:
    """Leave the process group :func:`init` created (if any) and forget it. ``destroy=False``
    after a failure: the other ranks may be stuck in a collective (NCCL's destroy would wait
    for them); the process is about to exit and torchrun stops the others."""
    global _current, _owns_group
    _current.cleanup()
    if destroy and _owns_group and torch.distributed.is_initialized():
        # Every rank done with its collectives, and objects holding gloo work (DDP reducers)
        # freed while the interpreter is whole: a rank that reached exit with such work alive
        # was seen to abort ("terminate called without an active exception") under load.
        with contextlib.suppress(Exception):
            torch.distributed.barrier()
        gc.collect()
        torch.distributed.destroy_process_group()
    _owns_group = False
    _current = SINGLE_PROCESS


@contextlib.contextmanager
def session(device: torch.device, *, init_method: str | None = None) -> Iterator[Distributed]:
    """:func:`init` ... :func:`shutdown` around a block (a failed block does not wait for
    the other processes: torchrun stops them when this one exits)."""
    dist = init(device, init_method=init_method)
    try:
        yield dist
    except BaseException:
        shutdown(destroy=False)
        raise
    shutdown()


# -- the launcher ---------------------------------------------------------------------------------
def strip_launcher_options(args: Sequence[str]) -> list[str]:
    """The command line without ``--launcher X`` / ``--nproc N`` (and their ``=`` forms)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--launcher", "--nproc"):
            skip = True
            continue
        if arg.startswith(("--launcher=", "--nproc=")):
            continue
        kept.append(arg)
    return kept


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m robustbench_cgn
    ARGS`` (one node; a free rendezvous port is picked)."""
    if nproc < 1:
        raise CGNBenchError("--nproc must be >= 1")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "robustbench_cgn",
        *strip_launcher_options(args),
    ]


def relaunch(nproc: int, args: Sequence[str]) -> int:
    """Run this command line again under torchrun with ``nproc`` processes; its exit code."""
    return subprocess.call(torchrun_command(nproc, args))


def default_nproc() -> int:
    """One process per visible GPU, else 1."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 1


# -- random state -----------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# -- BatchNorm over the global batch on the CPU -------------------------------------------------
class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, from two
    differentiable all-reduces (sums, then centred squares): ``nn.SyncBatchNorm`` only runs
    on GPUs. Eval mode, and a single process, are plain BatchNorm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not (self.training and distributed and torch.distributed.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        x = input.float()
        count = x.new_tensor([x.numel() // max(channels, 1)])
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:channels] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of a sum over ranks is the sum over ranks
    of the gradients (what ``torch.distributed.nn.functional.all_reduce``, now deprecated,
    does)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        torch.distributed.all_reduce(total)
        return total


def _convert_cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm layer below ``module`` for :class:`CPUSyncBatchNorm`, sharing its
    parameters and buffers (state-dict keys do not change)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, (CPUSyncBatchNorm, nn.SyncBatchNorm)
        ):
            synced = CPUSyncBatchNorm(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean = child.running_mean
            synced.running_var = child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            module.add_module(name, synced)
        else:
            _convert_cpu_sync_batchnorm(child)
    return module
