"""One process of a 2-process gloo job for tests/test_distributed.py (started by torchrun).

Each rank computes the single-process reference itself (a context with ``SINGLE_PROCESS``)
and the sharded / DDP result (the context of the job), then writes what it found to
``<out>/rank<R>.json``:

* ``predict_dataset`` and ``predict_images`` (with an unreadable file): logits, targets,
  indices and failures bit for bit equal to one process;
* ``mnist-cnn`` trained with DDP (193 images: the last global batch of 1 leaves rank 1 an
  empty part) versus one process: the largest weight / BatchNorm-statistics difference, and
  that only rank 0 wrote the checkpoint and the figures.

Usage: python -m torch.distributed.run --standalone --nproc-per-node 2 distributed_worker.py OUT
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.data import TensorDataset
from torchvision.io import write_png

from robustbench_cgn import Classifier, RunContext, TrainingSet, predict_dataset
from robustbench_cgn import distributed as dist_module
from robustbench_cgn_plugins.imagenet.tasks import InputConfig
from robustbench_cgn_plugins.imagenet.tasks.image_files import (
    ImageDataset,
    Preprocess,
    predict_images,
)


class TwoHeads(Classifier):
    """A tiny two-head convolutional classifier (deterministic weights)."""

    name = "two-heads"
    tasks = ("*",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head_a = torch.nn.Linear(8 * 8 * 8, 5)
        self.head_b = torch.nn.Linear(8 * 8 * 8, 5)

    def build(self, task, ctx):  # pragma: no cover - not used
        pass

    def fit(self, train_set, ctx):  # pragma: no cover - not used
        pass

    def predict(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        features = torch.relu(self.conv(images.float())).flatten(1)
        return {"": self.head_a(features), "b": self.head_b(features)}


def context(workdir: Path, distributed) -> RunContext:
    return RunContext(
        run_id="test",
        seed=3,
        device=torch.device("cpu"),
        workdir=workdir,
        cache_dir=workdir / "cache",
        distributed=distributed,
    )


def evaluation_checks(out: Path, ctx: RunContext, reference: RunContext) -> dict:
    classifier = TwoHeads()
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(37, 3, 8, 8, generator=generator)
    targets = torch.randint(0, 5, (37,), generator=generator)
    dataset = TensorDataset(images, targets)
    found: dict = {}
    for batch_size in (8, 10, 64):  # 5 batches, 4 batches, 1 batch (rank 1 gets none)
        sharded = predict_dataset(classifier, dataset, ctx, batch_size=batch_size)
        single = predict_dataset(classifier, dataset, reference, batch_size=batch_size)
        found[f"dataset_bs{batch_size}"] = bool(
            sharded.logits.keys() == single.logits.keys()
            and all(torch.equal(sharded.logits[h], single.logits[h]) for h in single.logits)
            and torch.equal(sharded.targets, single.targets)
            and len(sharded) == 37
        )
    folder = out / "images"
    if ctx.is_main:
        folder.mkdir(exist_ok=True)
        for i in range(11):
            image = (torch.rand(3, 10, 12, generator=generator) * 255).to(torch.uint8)
            write_png(image, str(folder / f"{i:02d}.png"))
        (folder / "05.png").write_bytes(b"not a png")
    ctx.distributed.barrier()
    paths = sorted(folder.glob("*.png"))
    image_set = ImageDataset(paths, Preprocess(InputConfig(size=8, crop_pct=1.0)))
    sharded = predict_images(classifier, image_set, ctx, batch_size=3, workers=0)
    single = predict_images(classifier, image_set, reference, batch_size=3, workers=0)
    found["images"] = bool(
        all(torch.equal(sharded.logits[h], single.logits[h]) for h in single.logits)
        and torch.equal(sharded.indices, single.indices)
        and sharded.failures == single.failures
        and [i for i, _ in single.failures] == [5]
        and len(single) == 10
    )
    return found


def training_checks(out: Path, ctx: RunContext, reference: RunContext) -> dict:
    from robustbench_cgn_plugins.mnist.classifier import MnistCNN
    from robustbench_cgn_plugins.mnist.tasks import TASKS

    task = TASKS["colored"]
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (193, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (193,), generator=generator)
    train_set = TrainingSet(TensorDataset(images, labels), 10, {"source": "random"})
    config = MnistCNN.Config(epochs=2, batch_size=64)
    models = {}
    for name, run_ctx in (("single", reference), ("ddp", ctx)):
        classifier = MnistCNN(config)
        classifier.build(task, run_ctx)
        classifier.fit(train_set, run_ctx)
        models[name] = classifier
    single, ddp = (models[name].model.state_dict() for name in ("single", "ddp"))
    differences = {
        key: (single[key].double() - ddp[key].double()).abs().max().item()
        for key in single
        if single[key].is_floating_point()
    }
    pairs = list(zip(models["single"].history, models["ddp"].history, strict=True))
    return {
        "same_keys": single.keys() == ddp.keys(),
        "max_weight_diff": max(differences.values()),
        "running_var_diff": differences["model.0.running_var"],
        "num_batches_tracked": int(ddp["model.0.num_batches_tracked"]),
        "history_epochs": len(pairs),
        "history_loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in pairs),
        "history_acc_diff": max(abs(a["train_acc"] - b["train_acc"]) for a, b in pairs),
    }


def ensemble_checks(out: Path, ctx: RunContext, reference: RunContext) -> dict:
    """``cgn-ensemble`` (random ResNet-50 at 32 px, BatchNorm frozen) trained on 7
    counterfactuals in global batches of 3 (parts of 2 + 1) and of 1 (rank 1's part is always
    empty): the largest weight difference to one process, and equal epoch statistics."""
    from robustbench_cgn_plugins.imagenet.cgn_ensemble import CGNEnsemble
    from robustbench_cgn_plugins.imagenet.counterfactual_folder import CounterfactualImageFolder
    from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK

    folder = out / "cf"
    if ctx.is_main:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(6)
        rows = ["path,shape,texture,background"]
        for i in range(7):
            image = torch.randint(0, 256, (3, 40, 40), generator=generator, dtype=torch.uint8)
            write_png(image, str(folder / "images" / f"{i}.png"))
            rows.append(f"images/{i}.png,{i},{100 + i},{500 + i}")
        (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    ctx.distributed.barrier()
    train_set = TrainingSet(CounterfactualImageFolder(folder), 1000, {"source": "fixture"})
    found = {}
    for batch_size in (3, 1):
        config = CGNEnsemble.Config(
            backbone_weights="random",
            image_size=32,
            batch_size=batch_size,
            epochs=1,
            max_steps_per_epoch=2,
            lr=0.001,
            cf_only=True,
        )
        trained = {}
        for name, run_ctx in (("single", reference), ("ddp", ctx)):
            run_ctx.checkpoints.folder.mkdir(parents=True, exist_ok=True)
            for stale in run_ctx.checkpoints.folder.glob("cgn-ensemble*"):
                stale.unlink()  # a fresh training for every batch size
            torch.manual_seed(0)
            classifier = CGNEnsemble(config)
            classifier.build(IMAGENET_TASK, run_ctx)
            if name == "single":
                initial = {k: v.clone() for k, v in classifier.model.state_dict().items()}
            classifier.fit(train_set, run_ctx)
            trained[name] = classifier
        single, ddp = (trained[n].model.state_dict() for n in ("single", "ddp"))
        history = [dict(trained[n].history[0]) for n in ("single", "ddp")]
        for entry in history:
            del entry["images_per_s"]
        found[f"bs{batch_size}"] = {
            "max_weight_diff": max(
                (single[k].double() - ddp[k].double()).abs().max().item()
                for k in single
                if single[k].is_floating_point()
            ),
            "moved": max(
                (single[k].double() - initial[k].double()).abs().max().item()
                for k in single
                if single[k].is_floating_point()
            ),
            "history_equal": history[0].keys() == history[1].keys()
            and all(abs(history[0][k] - history[1][k]) < 1e-4 for k in history[0]),
        }
    return found


def batchnorm_check(ctx: RunContext) -> float:
    """A BatchNorm between two layers (its input needs a gradient) trained for 4 SGD steps on
    batches of 13 (7 + 6 per rank): the largest difference to one process."""
    import copy

    import torch.nn.functional as F

    torch.manual_seed(5)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    generator = torch.Generator().manual_seed(4)
    x, y = torch.randn(52, 6, generator=generator), torch.randint(0, 3, (52,), generator=generator)
    trained = {}
    for name, dist in (("single", dist_module.SINGLE_PROCESS), ("ddp", ctx.distributed)):
        replica = copy.deepcopy(model)
        wrapped = dist.wrap(replica)
        optimizer = torch.optim.SGD(replica.parameters(), lr=0.5)
        for batch in torch.arange(52).split(13):
            part = dist.shard_batch(batch)
            loss = dist.batch_loss(F.cross_entropy, wrapped(x[part]), y[part], len(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        trained[name] = replica.state_dict()
    return max(
        (trained["single"][k].double() - trained["ddp"][k].double()).abs().max().item()
        for k in trained["single"]
    )


def helper_checks(ctx: RunContext) -> dict:
    """sync_module copies rank 0's weights; on_main shares rank 0's result and exception;
    main_first leaves every rank with rank 0's random state."""
    dist = ctx.distributed
    module = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(module.weight, float(dist.rank))
    dist.sync_module(module)

    def fail():
        raise ValueError("from rank 0")

    try:
        dist.on_main(fail)
        raised = ""
    except ValueError as exc:
        raised = str(exc)
    with dist.main_first():
        torch.manual_seed(100 + dist.rank)
    draws = dist.all_gather_object(torch.rand(3).tolist())
    return {
        "synced": bool((module.weight == 0).all()),
        "on_main": dist.on_main(lambda: dist.rank) == 0,
        "raised": raised,
        "same_random_state": draws[0] == draws[1],
    }


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist = dist_module.init(torch.device("cpu"))
    assert dist.world_size == 2 and dist.backend == "gloo", dist
    rank_dir = out / f"work-rank{dist.rank}"
    ctx = context(out / "ddp-run", dist)
    reference = context(rank_dir, dist_module.SINGLE_PROCESS)
    found = {"rank": dist.rank, "is_main": ctx.is_main}
    found["evaluation"] = evaluation_checks(out, ctx, reference)
    found["training"] = training_checks(out, ctx, reference)
    found["batchnorm_diff"] = batchnorm_check(ctx)
    found["ensemble"] = ensemble_checks(out, ctx, reference)
    found["helpers"] = helper_checks(ctx)
    found["artifacts_in_scratch"] = not str(ctx.artifacts_dir).startswith(str(out))
    dist.barrier()
    (out / f"rank{dist.rank}.json").write_text(json.dumps(found, indent=2))
    dist_module.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
