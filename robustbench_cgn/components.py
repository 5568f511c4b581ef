"""The three kinds of component a plugin can provide: generators, classifiers, benchmarks.

A run wires them together::

    train_set  = generator.generate(task, ctx)      # labelled training data (or None)
    classifier.build(task, ctx)
    classifier.fit(train_set, ctx)                   # skipped when train_set is None
    metrics    = benchmark.evaluate(classifier, ctx) # yields MetricResult

Each component class declares its metadata as class attributes (``name``, ``description``,
``version``) and its options as a dataclass ``Config`` whose field defaults are the defaults
shown by ``cgnbench list`` and type-checked for ``--set key=value``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.utils.data import ConcatDataset, Dataset

from .artifacts import DatasetSpec
from .errors import IncompatibleError

if TYPE_CHECKING:
    from .context import RunContext


@dataclass(frozen=True)
class NoConfig:
    """Config of a component that has no options."""


@dataclass(frozen=True)
class Task:
    """What a benchmark asks its training data and classifier to solve.

    ``name`` identifies the data distribution (e.g. ``colored-mnist``); generators declare the
    task names they can produce data for, with wildcards (``*-mnist``).

    The image contract a training set must keep (checked on its first samples before training,
    :mod:`robustbench_cgn.contracts`): images are tensors ``input_shape`` (channels first;
    ``exact_size=False``: only the channel count is fixed), ``uint8`` 0..255 or ``float32`` in
    ``value_range`` (``None``: any finite floats); labels are integers in ``0..num_classes-1``
    (or an integer tensor of one per head).

    A task may also name its classes and declare data ``splits`` with a ``loader``
    ``(split, ctx, seed) -> TrainingSet`` (what ``original`` trains on and what other plugins
    read through :meth:`load`) and a ``data_identity`` ``ctx -> dict`` (which data the loader
    will use: part of the identity of runs trained on it). Tasks are registered by their domain
    (``register_tasks``) and found by name with :func:`robustbench_cgn.get_task`.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    family: str = ""
    description: str = ""
    value_range: tuple[float, float] | None = None
    exact_size: bool = True
    classes: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    loader: Callable[[str, RunContext, int], TrainingSet] | None = field(
        default=None, compare=False, repr=False
    )
    data_identity: Callable[[RunContext], dict[str, Any]] | None = field(
        default=None, compare=False, repr=False
    )
    #: Makes sure the data the task needs beyond its loader's first step is there (fetching
    #: it where allowed), raising one line otherwise; the runner calls it before a run starts,
    #: so a missing file is found before generation and training, not after.
    prepare: Callable[[RunContext], None] | None = field(default=None, compare=False, repr=False)

    def check_data(self, ctx: RunContext) -> None:
        if self.prepare is not None:
            self.prepare(ctx)

    def load(self, split: str, ctx: RunContext, seed: int = 0) -> TrainingSet:
        """The ``split`` of this task's own data, as ``(image, label)`` pairs that keep the
        task's image contract, with provenance."""
        if split not in self.splits or self.loader is None:
            have = ", ".join(self.splits) or "none"
            raise IncompatibleError(
                f"task {self.name!r} has no {split!r} split to load (its splits: {have})"
            )
        return self.loader(split, ctx, seed)

    def identity(self, ctx: RunContext) -> dict[str, Any]:
        """Which data :meth:`load` will use in ``ctx`` (e.g. full MNIST or the fallback)."""
        return dict(self.data_identity(ctx)) if self.data_identity is not None else {}


@dataclass(frozen=True)
class MetricSpec:
    """A metric a benchmark reports: its name, direction and the protocol it follows."""

    name: str
    higher_is_better: bool = True
    protocol: str = ""
    description: str = ""
    main: bool = False


@dataclass
class MetricResult:
    """One measured number.

    ``key`` distinguishes sub-results of one metric (a head, a variant, a class): the empty key
    is the overall value that leaderboards show. ``n`` is how many items the value is over.
    """

    name: str
    value: float
    n: int
    protocol: str = ""
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingSet:
    """Labelled training data produced by a generator, with its provenance.

    ``dataset`` yields ``(image, label)`` pairs; ``provenance`` says where the data came from
    (e.g. ``{"source": "mnist-full", "variant": "colored"}``) and is stored with every run.
    """

    dataset: Dataset
    num_classes: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


def concat_training_sets(first: TrainingSet, second: TrainingSet) -> TrainingSet:
    """Concatenate two training sets (the paper's "O + CGN" mix)."""
    if first.num_classes != second.num_classes:
        raise ValueError("cannot mix training sets with different numbers of classes")
    return TrainingSet(
        dataset=ConcatDataset([first.dataset, second.dataset]),
        num_classes=first.num_classes,
        provenance={"mix": [first.provenance, second.provenance]},
    )


class Component(ABC):
    """Shared metadata and config handling of every component."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type] = NoConfig
    # A component that stands for a family (``timm``) names the config field that a
    # ``name:<value>`` suffix sets: ``timm:resnet50`` is ``timm`` with ``model=resnet50``.
    name_argument: ClassVar[str | None] = None

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The config defaults, as plain data."""
        return dataclasses.asdict(cls.Config())

    def identity(self, task: Task, ctx: RunContext) -> dict[str, Any]:
        """Cheap facts that change the results and are known before running.

        For example which data source will be used or the hash of the weights file. They go
        into the run identity, so a run on other data or weights is a different run.
        """
        return {}

    def requirements(self, task: Task) -> list[str]:
        """Names of the registered weights and datasets a run of this component needs:
        what ``cgnbench fetch --for`` downloads ahead of an offline run. Default: the
        ``weights`` setting when it is neither ``auto`` nor a local file (a registered name
        or a URL); components whose ``auto`` means a registered file name it themselves."""
        weights = str(getattr(self.config, "weights", "") or "").strip()
        if weights in ("", "auto", "random", "none") or weights.startswith("run:"):
            return []  # run:<id>: a training's weights, already local
        if "://" not in weights and ("/" in weights or Path(weights).expanduser().exists()):
            return []  # a local file
        return [weights]

    def prefetch(self, task: Task) -> None:  # noqa: B027 - optional hook, empty by default
        """Download what :meth:`requirements` cannot name (e.g. a hub's own cache)."""


class TaskScoped(Component):
    """A component that serves the tasks whose names match ``tasks`` (wildcards allowed)."""

    tasks: ClassVar[tuple[str, ...]] = ("*",)

    @classmethod
    def supports(cls, task: Task) -> bool:
        return any(fnmatch.fnmatchcase(task.name, pattern) for pattern in cls.tasks)


class Generator(TaskScoped):
    """Produces a labelled training set for a task. ``original`` data is a generator too.

    ``implements`` names the generator this one stands in for on its tasks: ``cgn-imagenet``
    implements ``cgn``, so ``--generator cgn`` on an ImageNet benchmark runs it.
    ``default_classifier`` is the classifier its data is meant to train (used when the run
    names none), e.g. ``cgn-ensemble`` for ImageNet counterfactuals.
    """

    kind: ClassVar[str] = "generator"
    implements: ClassVar[str | None] = None
    default_classifier: ClassVar[str | None] = None
    #: The trainable-generator contract: a frozen dataclass of training options (its numbers
    #: ``bounded``; fields with ``identity=False`` are bookkeeping, not part of what is
    #: trained), or ``None`` for a generator that cannot be trained by the harness.
    Training: ClassVar[type | None] = None

    @abstractmethod
    def generate(self, task: Task, ctx: RunContext) -> TrainingSet | None:
        """Return the training data, or ``None`` for "no training: use the classifier as is"."""

    def train(self, task: Task, ctx: RunContext, options: Any) -> Path:
        """Train this generator for ``task`` in ``ctx.workdir`` (resuming from the checkpoints
        a killed attempt left there) and return the exported weights file, which the
        generator's ``weights`` setting accepts (``run:<id>`` resolves to it). ``options`` is
        an instance of :attr:`Training`; ``ctx.seed`` seeds the training."""
        raise IncompatibleError(f"generator {self.name!r} cannot be trained by cgnbench")

    def sample_with_masks(
        self, task: Task, ctx: RunContext, n: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``n`` samples as ``(uint8 images [n, 3, H, W], labels [n], masks [n, H, W] in
        [0, 1])`` for generator-quality metrics (mask statistics, shape agreement), or ``None``
        when the generator has no notion of an object mask."""
        return None


class Classifier(TaskScoped):
    """A model that is built for a task, trained on a training set and predicts logits.

    ``predict`` returns a mapping head name -> logits ``[B, num_classes]``. Single-head models
    use the head ``""``; multi-head models (the CGN invariant ensemble) return one entry per
    head plus their combinations, so benchmarks can report per head.
    """

    kind: ClassVar[str] = "classifier"

    @abstractmethod
    def build(self, task: Task, ctx: RunContext) -> None:
        """Create the model (and load pretrained weights, if any) on ``ctx.device``."""

    @abstractmethod
    def fit(self, train_set: TrainingSet, ctx: RunContext) -> None:
        """Train on ``train_set``; save checkpoints with ``ctx.checkpoints`` to be resumable."""

    @abstractmethod
    def predict(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """Logits per head for a batch already on the model's device."""

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Turn a batch as the benchmark's dataset yields it into model input (default: as is)."""
        return images

    def embed(self, images: torch.Tensor) -> torch.Tensor | None:
        """Penultimate features ``[B, D]`` of prepared images (for t-SNE), or ``None``."""
        return None

    def gradcam_target(self, head: str = "") -> tuple[torch.nn.Module, torch.nn.Module] | None:
        """``(module mapping prepared images to the logits of head, its last conv layer)``
        for GradCAM benchmarks, or ``None`` when the classifier does not expose one."""
        return None


class Benchmark(Component):
    """Declares its task, datasets and metrics, and scores a trained classifier.

    Scoring should be a pure function of predictions (unit-testable on hand-made inputs);
    ``evaluate`` runs the classifier over the benchmark's data and yields the metrics.
    Results already in ``ctx.recorded_metrics`` (from an interrupted earlier attempt) may be
    skipped.
    """

    kind: ClassVar[str] = "benchmark"
    task: ClassVar[Task]
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    datasets: ClassVar[tuple[DatasetSpec, ...]] = ()
    default_classifier: ClassVar[str | None] = None
    # False: the benchmark scores the generator's data itself (``evaluate`` gets
    # ``classifier=None`` and reads ``ctx.train_set``); no classifier is built or trained.
    trains_classifier: ClassVar[bool] = True

    def requirements(self, task: Task) -> list[str]:
        """The datasets it declares (``datasets``)."""
        return [spec.name for spec in self.datasets]

    @classmethod
    def main_metric(cls) -> MetricSpec | None:
        for spec in cls.metrics:
            if spec.main:
                return spec
        return cls.metrics[0] if cls.metrics else None

    @abstractmethod
    def evaluate(self, classifier: Classifier | None, ctx: RunContext) -> Iterator[MetricResult]:
        """Yield metric results; each is recorded as soon as it is yielded."""
