"""The ``mnist-cnn`` classifier: the reference CNN with its Adadelta schedule, resumable."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustbench_cgn import Classifier, RunContext, Task, TrainingSet, bounded
from robustbench_cgn.data.batching import IndexedTensors
from robustbench_cgn.device import autocast
from robustbench_cgn.figures import save_training_curves

from .cnn import CNN, CNNLogits
from .tasks import uint8_to_model_input

CHECKPOINT = "mnist-cnn"


class MnistCNN(Classifier):
    """cgn-reference.md section 3: NLL loss, Adadelta lr 1.0, StepLR(1, 0.7), batch 64.

    Batches are gathered straight from the training tensors (no per-image DataLoader work)
    in an order drawn from ``(seed, epoch)``, so an interrupted training resumes at the next
    epoch and ends with the same weights as an uninterrupted one.

    Under torchrun it trains with DDP: every rank draws the same global batches of
    ``batch_size`` and takes its contiguous part (``batch_size / world_size`` images), the
    input BatchNorm normalises with the statistics of the global batch, and the all-reduced
    gradient is that of the global batch's mean loss: the same algorithm as one process, equal
    up to floating-point summation order.
    """

    name = "mnist-cnn"
    description = "the CGN paper's MNIST CNN (67,760 params), Adadelta, 10 epochs"
    version = "0.1.0"
    tasks = ("any task of 3x32x32 images",)

    @classmethod
    def supports(cls, task: Task) -> bool:
        return tuple(task.input_shape) == (3, 32, 32)  # the MNIST variants and derived tasks

    @dataclass(frozen=True)
    class Config:
        epochs: int = bounded(10, min=1, max=10_000)
        batch_size: int = bounded(64, min=1, max=65_536)
        lr: float = bounded(1.0, above=0.0, max=100.0)
        lr_gamma: float = bounded(0.7, above=0.0, max=1.0)

        def __post_init__(self):
            if self.epochs < 1 or self.batch_size < 1:
                raise ValueError("epochs and batch_size must be >= 1")
            if self.lr <= 0:
                raise ValueError("lr must be positive")

    def build(self, task: Task, ctx: RunContext) -> None:
        torch.manual_seed(ctx.seed)
        self.model = CNN(n_classes=task.num_classes).to(ctx.device)
        self.device = ctx.device

    def fit(self, train_set: TrainingSet, ctx: RunContext) -> None:
        config = self.config
        optimizer = torch.optim.Adadelta(self.model.parameters(), lr=config.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=config.lr_gamma)
        history: list[dict] = []
        start_epoch = 0
        state = ctx.checkpoints.load(CHECKPOINT)
        if state is not None:
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"])
            history = json.loads(state["history"])
            ctx.log(f"mnist-cnn: resuming after epoch {start_epoch}")
        data = IndexedTensors.from_dataset(train_set.dataset)
        steps = -(-len(data) // config.batch_size)
        dist = ctx.distributed
        model = dist.wrap(self.model)  # DDP under torchrun, the model itself in one process
        for epoch in range(start_epoch, config.epochs):
            self.model.train()
            order = torch.Generator().manual_seed(ctx.seed * 1_000 + epoch)
            total_loss, correct, seen, started = 0.0, 0, 0, time.perf_counter()
            with ctx.progress.task(
                f"mnist-cnn epoch {epoch + 1}/{config.epochs}", total=steps
            ) as bar:
                batches = data.batch_indices(config.batch_size, order)
                for step, batch in enumerate(batches):
                    images, labels = data.gather(dist.shard_batch(batch))
                    images = uint8_to_model_input(images.to(ctx.device, non_blocking=True))
                    labels = labels.to(ctx.device, non_blocking=True)
                    with autocast(ctx.device, ctx.precision):
                        output = model(images)
                    loss = dist.batch_loss(F.nll_loss, output.float(), labels, len(batch))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total_loss += loss.item() * len(batch) / dist.world_size  # this rank's sum
                    correct += int((output.argmax(1) == labels).sum())
                    seen += len(labels)
                    if step % 50 == 0:
                        bar.update(0, status=f"loss {total_loss / max(seen, 1):.3f}")
                    bar.update(1)
            total_loss, correct, seen = dist.sum_over_ranks(total_loss, correct, seen)
            scheduler.step()
            seconds = time.perf_counter() - started
            history.append(
                {
                    "epoch": epoch + 1,
                    "loss": total_loss / seen,
                    "train_acc": 100.0 * correct / seen,
                    "images_per_s": seen / seconds,
                }
            )
            ctx.checkpoints.save(
                CHECKPOINT,
                {
                    "model": self.model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "history": json.dumps(history),
                },
            )
        if ctx.is_main:
            (ctx.artifacts_dir / "training_history.json").write_text(json.dumps(history, indent=2))
            save_training_curves(
                ctx.artifacts_dir / "training_curves.png",
                history,
                f"mnist-cnn on {train_set.provenance.get('source', 'its data')}",
            )
        self.history = history
        self.model.eval()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return uint8_to_model_input(images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model.features(images)

    def gradcam_target(self, head: str = "") -> tuple[torch.nn.Module, torch.nn.Module]:
        return CNNLogits(self.model), self.model.last_conv

    def predict(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        self.model.eval()
        return {"": self.model(images)}
