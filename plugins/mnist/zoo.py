"""Named MNIST generator weights shipped with cgnbench (``cgn.c-mnist``, ...).

Each entry is trained with this project's own training command on full real MNIST and
shipped inside the package with its training config and provenance. Entries appear here only
once their weights file exists: a zoo name that is not trained yet is reported as such.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from robustbench_cgn import DataNotFoundError, WeightsSpec
from robustbench_cgn.resolver import ResolvedFile
from robustbench_cgn.resolver import resolve_weights as resolve

ZOO_TAG_OF_TASK = {
    "colored-mnist": "c-mnist",
    "double-colored-mnist": "dc-mnist",
    "wildlife-mnist": "w-mnist",
}
TASK_OF_VARIANT = {
    "colored": "colored-mnist",
    "double_colored": "double-colored-mnist",
    "wildlife": "wildlife-mnist",
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
        size=_weights_file(name).stat().st_size,
        description=(
            f"{record.get('model')} on {record.get('variant')} MNIST, "
            f"{record.get('iterations')} iterations ({_recipe(record)})"
        ),
        tags=("mnist", config.get("variant", "")),
        task=TASK_OF_VARIANT.get(config.get("variant", ""), ""),
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


def _authors_spec(tag: str, variant: str) -> WeightsSpec:
    file = f"cgn_{variant}_MNIST.pth"
    return WeightsSpec(
        f"cgn.{tag}-authors",
        sha256=AUTHORS_SHA256[variant],
        filename=file,
        description=f"the CGN authors' released {variant.replace('_', '-')} MNIST CGN",
        tags=("mnist", variant),
        size=2_661_744,
        license="MIT (autonomousvision/counterfactual_generative_networks)",
        citation="Sauer & Geiger, Counterfactual Generative Networks, ICLR 2021",
        local=(f"cgn_mnist_weights/{file}",),
        task=f"{variant.replace('_', '-')}-mnist",
    )


#: The CGN authors' MNIST checkpoints (no public download address is known: they are found
#: under ``--data-dir``/``cgn_mnist_weights``, an override, or the cache).
AUTHORS_SHA256 = {
    "colored": "6b178e7c1924b9efc532c467e7f0b77d2702efb536de9816bbd7e92c26d9b3fe",
    "double_colored": "7aa06c907f099c63a26127164a38d2ab353f1cdcafabdf8ca9303a0e9197b933",
    "wildlife": "db5bc3108f7bfbd74a85e2b267e65e95bd918920a02fd8de64c947fd8a0015f0",
}
AUTHORS_WEIGHTS = {
    spec.name: spec
    for spec in (
        _authors_spec("c-mnist", "colored"),
        _authors_spec("dc-mnist", "double_colored"),
        _authors_spec("w-mnist", "wildlife"),
    )
}


def registered_weights() -> list[WeightsSpec]:
    """Every MNIST weights spec: the shipped zoo entries and the authors' checkpoints."""
    return [*shipped_weights(), *AUTHORS_WEIGHTS.values()]


def resolve_weights(
    weights: str, component: str, task_name: str, *, data_dir: str | Path | None = None
) -> ResolvedFile:
    """``auto`` / a zoo or authors' name / a file path or URL -> a :class:`ResolvedFile`.

    A zoo file is checked against the sha256 in its record (a damaged install is an error,
    not silently different counterfactuals). A named entry trained for another task is refused.
    """
    if weights == "auto":
        weights = f"{component}.{ZOO_TAG_OF_TASK[task_name]}"
    specs: dict[str, WeightsSpec] = {
        name: spec for name, spec in AUTHORS_WEIGHTS.items() if spec.component == component
    }
    if weights in PLANNED:
        path = _weights_file(weights)
        if not path.is_file():
            raise DataNotFoundError(
                f"the zoo weights {weights!r} are not trained yet; pass a weights file instead, "
                f"e.g. --set generator.weights=/path/to/cgn_colored_MNIST.pth (the CGN "
                f"authors' release) or one written by `cgnbench train-generator`"
            )
        specs[weights] = replace(_spec(weights), source=str(path))
    spec = specs.get(weights)
    trained_for = spec.task if spec is not None else ""
    if trained_for and task_name and trained_for != task_name:
        raise DataNotFoundError(
            f"{component} weights {weights!r} were trained for {trained_for}, not {task_name}: "
            f"use {component}.{ZOO_TAG_OF_TASK.get(task_name, '<tag>')} or 'auto'"
        )
    resolved = resolve(weights, specs=specs, data_dir=data_dir, what=f"{component} weights")
    if spec is None:
        _warn_if_trained_for_another_task(resolved, component, task_name)
    return resolved


@functools.cache
def _registered_by_sha256() -> dict[str, WeightsSpec]:
    """The registered MNIST weights by sha256 (read once: it opens every shipped record)."""
    return {spec.sha256: spec for spec in registered_weights() if spec.sha256}


def _warn_if_trained_for_another_task(resolved: ResolvedFile, component: str, task: str) -> None:
    """An anonymous file (a path or URL) is accepted, with a warning when what is known of it
    (a registered file with the same sha256, or its training record) names another task."""
    twin = _registered_by_sha256().get(resolved.sha256)
    trained_for, how = (twin.task, f"it is {twin.name}") if twin is not None else ("", "")
    if not trained_for:
        sidecar = resolved.path.with_suffix(".json")
        try:
            variant = (json.loads(sidecar.read_text()).get("config") or {}).get("variant", "")
        except (OSError, ValueError, AttributeError):
            variant = ""
        trained_for, how = TASK_OF_VARIANT.get(variant, ""), f"its record {sidecar.name} says so"
    if trained_for and task and trained_for != task:
        warnings.warn(
            f"{component} weights {resolved.label} were trained for {trained_for}, not {task} "
            f"({how}); the run goes ahead, but its counterfactuals are not {task}'s",
            stacklevel=2,
        )


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
