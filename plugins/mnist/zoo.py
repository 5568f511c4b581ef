"""Named MNIST generator weights shipped with cgnbench (``cgn.c-mnist``, ...).

Each entry is trained with this project's own training command on full real MNIST and
shipped inside the package with its training config and provenance. Entries appear here only
once their weights file exists: a zoo name that is not trained yet is reported as such.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from robustbench_cgn import DataNotFoundError, WeightsSpec

ZOO_TAG_OF_TASK = {
    "colored-mnist": "c-mnist",
    "double-colored-mnist": "dc-mnist",
    "wildlife-mnist": "w-mnist",
}
PLANNED = (
    "cgn.c-mnist",
    "cgn.dc-mnist",
    "cgn.w-mnist",
    "dcgan.c-mnist",
    "dcgan.dc-mnist",
    "dcgan.w-mnist",
)
WEIGHTS_PACKAGE = "robustbench_cgn_plugins.mnist"
WEIGHTS_FOLDER = "weights"
PREPROCESSING = {"input_size": [3, 32, 32], "range": [-1, 1], "storage": "uint8 x/127.5-1"}


def _weights_file(name: str) -> Path:
    """Where the zoo entry ``name`` lives inside the installed package."""
    return Path(str(resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FOLDER, f"{name}.pth")))


def shipped_weights() -> list[WeightsSpec]:
    """The zoo entries whose weights file is present in the installed package."""
    return [
        WeightsSpec(
            name,
            source=f"package:{WEIGHTS_PACKAGE}/{WEIGHTS_FOLDER}/{name}.pth",
            tags=("mnist",),
            preprocessing=PREPROCESSING,
        )
        for name in PLANNED
        if _weights_file(name).is_file()
    ]


def resolve_weights(weights: str, component: str, task_name: str) -> tuple[str, Path]:
    """``auto`` / a zoo name / a file path -> (label, local path). Clear errors otherwise."""
    if weights == "auto":
        weights = f"{component}.{ZOO_TAG_OF_TASK[task_name]}"
    if weights in PLANNED:
        if _weights_file(weights).is_file():
            return weights, _weights_file(weights)
        raise DataNotFoundError(
            f"the zoo weights {weights!r} are not trained yet; pass a checkpoint file instead, "
            f"e.g. --set generator.weights=/path/to/cgn_colored_MNIST.pth (the CGN authors' "
            f"release)"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"{component} weights {weights!r} are neither a zoo name ({', '.join(PLANNED)}) "
            "nor an existing file"
        )
    return str(path.resolve()), path
