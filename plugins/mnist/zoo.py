"""Named MNIST generator weights shipped with cgnbench (``cgn.c-mnist``, ...).

Each entry is trained with this project's own training command on full real MNIST and
shipped inside the package with its training config and provenance. Entries appear here only
once their weights file exists: a zoo name that is not trained yet is reported as such.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from robustbench_cgn import DataNotFoundError, WeightsSpec
from robustbench_cgn.data.download import verify_file

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
#: Quality gates of shipped entries: the share of CGN masks / DCGAN samples that the shape
#: oracle reads as their label (``tests/plugins/mnist/test_mnist_cf_quality.py``). W-MNIST's
#: DCGAN gate is lower: it draws visibly rougher digits (its 15-epoch samples read 68.8 %; the
#: texture reading itself loses ~5 points on real W-MNIST images), while a randomly
#: initialised or mis-loaded generator reads ~1 % (printed by the quality test).
CGN_GATE = 0.85
DCGAN_GATES = {"c-mnist": 0.85, "dc-mnist": 0.85, "w-mnist": 0.60}
WEIGHTS_PACKAGE = "robustbench_cgn_plugins.mnist"
WEIGHTS_FOLDER = "weights"
PREPROCESSING = {"input_size": [3, 32, 32], "range": [-1, 1], "storage": "uint8 x/127.5-1"}


def _weights_file(name: str) -> Path:
    """Where the zoo entry ``name`` lives inside the installed package."""
    return Path(str(resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FOLDER, f"{name}.pth")))


def _sidecar(name: str) -> dict[str, Any]:
    """The training record exported next to the weights (``<name>.json``)."""
    path = _weights_file(name).with_suffix(".json")
    if not path.is_file():
        raise DataNotFoundError(f"zoo weights {name!r} ship without their record {path.name}")
    return json.loads(path.read_text())


def _recipe(record: dict[str, Any]) -> str:
    """``faithful``/``improved``/``dcgan`` plus the anti-collapse options the entry used."""
    config = record.get("config") or {}
    parts = [record.get("mode") or "dcgan"]
    if config.get("texture_init") == "data":
        parts.append("data texture init")
    if config.get("mechanism_prior"):
        parts.append(f"warm-up {config.get('mechanism_prior_iterations')} it")
    return ", ".join(parts)


def _spec(name: str) -> WeightsSpec:
    record = _sidecar(name)
    config = record.get("config", {})
    data = record.get("data") or {}
    return WeightsSpec(
        name,
        source=f"package:{WEIGHTS_PACKAGE}/{WEIGHTS_FOLDER}/{name}.pth",
        sha256=record.get("weights_sha256"),
        description=(
            f"{record.get('model')} on {record.get('variant')} MNIST, "
            f"{record.get('iterations')} iterations ({_recipe(record)})"
        ),
        tags=("mnist", config.get("variant", "")),
        preprocessing=PREPROCESSING,
        config=(
            {"mask_activation": record["mask_activation"]} if record.get("mask_activation") else {}
        ),
        provenance={
            "command": record.get("command"),
            "iterations": record.get("iterations"),
            "data_source": data.get("mnist_source"),
            "vgg": (record.get("vgg") or {}).get("sha256"),
        },
    )


def shipped_weights() -> list[WeightsSpec]:
    """The zoo entries whose weights file is present in the installed package."""
    return [_spec(name) for name in PLANNED if _weights_file(name).is_file()]


def resolve_weights(weights: str, component: str, task_name: str) -> tuple[str, Path]:
    """``auto`` / a zoo name / a file path -> (label, local path). Clear errors otherwise.

    A zoo file is checked against the sha256 in its record (a damaged install is an error,
    not silently different counterfactuals).
    """
    if weights == "auto":
        weights = f"{component}.{ZOO_TAG_OF_TASK[task_name]}"
    if weights in PLANNED:
        path = _weights_file(weights)
        if not path.is_file():
            raise DataNotFoundError(
                f"the zoo weights {weights!r} are not trained yet; pass a weights file instead, "
                f"e.g. --set generator.weights=/path/to/cgn_colored_MNIST.pth (the CGN "
                f"authors' release) or one written by `cgnbench train-generator`"
            )
        expected = _sidecar(weights).get("weights_sha256")
        if expected:
            verify_file(path, expected)
        return weights, path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"{component} weights {weights!r} are neither a zoo name ({', '.join(PLANNED)}) "
            "nor an existing file"
        )
    return str(path.resolve()), path


TRAINING_FACTS = (
    "mode",
    "iterations",
    "lambda_adv",
    "lambda_binary",
    "style_weights",
    "lambda_edge",
    "mechanism_prior",
    "mechanism_prior_iterations",
    "texture_init",
)


def training_record(weights: Path) -> dict[str, Any]:
    """The loss settings and length of weights exported by ``cgnbench train-generator`` (from
    the ``.json`` next to them), or ``{}`` for other files (e.g. the authors' release)."""
    sidecar = Path(weights).with_suffix(".json")
    if not sidecar.is_file():
        return {}
    record = json.loads(sidecar.read_text())
    config = record.get("config") or {}
    facts = {key: config.get(key) for key in TRAINING_FACTS if key in config}
    facts["iterations"] = record.get("iterations", facts.get("iterations"))
    return facts
