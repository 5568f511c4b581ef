"""cgnbench: a pluggable out-of-distribution robustness benchmark harness.

Everything a plugin may rely on is importable from here.
"""

from .artifacts import RemoteFile, WeightsSpec
from .components import (
    Benchmark,
    Classifier,
    Component,
    DatasetSpec,
    Generator,
    MetricResult,
    MetricSpec,
    NoConfig,
    Task,
    TrainingSet,
    concat_training_sets,
)
from .config import Range, bounded
from .context import RunContext
from .errors import (
    CGNBenchError,
    ChecksumError,
    ConfigError,
    DataNotFoundError,
    IncompatibleError,
    RunBusyError,
    UnknownNameError,
)
from .evaluation import Predictions, accuracy, predict_dataset
from .hookspecs import hookimpl
from .tasks import get_task
from .trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "Benchmark",
    "CGNBenchError",
    "ChecksumError",
    "Classifier",
    "Component",
    "ConfigError",
    "DataNotFoundError",
    "DatasetSpec",
    "Generator",
    "IncompatibleError",
    "MetricResult",
    "MetricSpec",
    "NoConfig",
    "Predictions",
    "Range",
    "RemoteFile",
    "RunContext",
    "Task",
    "Trainer",
    "TrainingSet",
    "RunBusyError",
    "UnknownNameError",
    "WeightsSpec",
    "accuracy",
    "bounded",
    "concat_training_sets",
    "get_task",
    "hookimpl",
    "predict_dataset",
]
