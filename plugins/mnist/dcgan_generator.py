"""The ``dcgan`` generator on MNIST: class-conditional DCGAN samples (Table 3's "GAN" rows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import TensorDataset

from robustbench_cgn import Generator, RunContext, Task, TrainingSet, bounded

from .counterfactuals import CounterfactualBatch, write_image_batches
from .generated_sets import cached_image_set
from .generator_training import MnistTraining, train_mnist_generator
from .hashing import state_dict_sha256
from .sample_grids import save_dcgan_grid
from .tasks import MNIST_TASK_NAMES
from .training import load_dcgan_generator, sample_dcgan
from .zoo import resolve_weights


class DCGANBaselineGenerator(Generator):
    """``n_samples`` class-balanced samples of the reproduction's conditional DCGAN.

    ``weights`` is ``auto`` (the zoo entry for the task, e.g. ``dcgan.c-mnist``), a zoo name or
    an exported generator file (``cgnbench train-generator --model dcgan`` writes one). A GAN
    reproduces its training distribution, spurious colour included: the baseline that shows
    generated data alone does not remove a shortcut. The default size matches ``cgn``'s so
    the two rows of a leaderboard train on equally many images.
    """

    name = "dcgan"
    description = "conditional DCGAN samples (the reproduction's GAN baseline)"
    version = "0.1.0"
    tasks = MNIST_TASK_NAMES

    @dataclass(frozen=True)
    class Config:
        weights: str = "auto"
        n_samples: int = bounded(50_000, min=1, max=10**8)
        batch_size: int = bounded(500, min=1, max=65_536)

        def __post_init__(self):
            if self.n_samples < 1 or self.batch_size < 1:
                raise ValueError("n_samples and batch_size must be >= 1")

    Training = MnistTraining  # `cgnbench train-generator -g dcgan --task <mnist task>`

    def train(self, task: Task, ctx: RunContext, options: MnistTraining) -> Path:
        return train_mnist_generator("dcgan", task, ctx, options)

    def identity(self, task: Task, ctx: RunContext) -> dict:
        weights = resolve_weights(self.config.weights, "dcgan", task.name, data_dir=ctx.data_dir)
        return {"weights": weights.label, "weights_sha256": weights.sha256}

    def generate(self, task: Task, ctx: RunContext) -> TrainingSet:
        config = self.config
        weights = resolve_weights(config.weights, "dcgan", task.name, data_dir=ctx.data_dir)
        label, path, digest = weights.label, weights.path, weights.sha256

        def write(folder, advance):
            gan = load_dcgan_generator(path)

            def batches(start):
                return (
                    CounterfactualBatch(images, labels, labels, labels)
                    for images, labels in sample_dcgan(
                        gan,
                        config.n_samples,
                        seed=ctx.seed,
                        batch_size=config.batch_size,
                        start=start,
                    )
                )

            meta = {
                "generator": "dcgan",
                "seed": ctx.seed,
                "batch_size": config.batch_size,
                "label": "class label (fg_labels = bg_labels = labels)",
                "dcgan_state_dict_sha256": state_dict_sha256(gan),
            }
            write_image_batches(
                batches,
                folder,
                config.n_samples,
                image_size=32,
                meta=meta,
                weights_path=path,
                extra_meta={"weights": label},
                overwrite=True,
                on_progress=advance,
            )

        key = f"dcgan-{digest[:16]}-n{config.n_samples}-s{ctx.seed}"
        data = cached_image_set(ctx, key, config.n_samples, "sampling the DCGAN", write)
        if ctx.is_main:
            save_dcgan_grid(load_dcgan_generator(path), ctx.artifacts_dir, "dcgan", seed=ctx.seed)
        provenance = {
            "source": "dcgan-samples",
            "weights": label,
            "weights_sha256": digest,
            "folder": str(data.folder),
            "n": data.meta["n"],
            "seed": data.meta["seed"],
        }
        return TrainingSet(TensorDataset(data.images, data.labels), task.num_classes, provenance)
