"""Bring your own ImageNet classifier, without writing a plugin package:

* ``torchscript:FILE``: a TorchScript file (``torch.jit.save``);
* ``exported:FILE``: a ``torch.export`` program (``torch.export.save``, ``.pt2``);
* ``python:MODULE:FUNCTION``: a function that returns a ``torch.nn.Module``, or a pair
  ``(module, input_config)`` with ``input_config`` a dict of the fields below.

The preprocessing is declared next to the model: ``size``, ``crop_pct``, ``interpolation``,
``mean``, ``std`` from ``--set classifier.<field>=...``, else from a sidecar ``FILE.json`` (for
files) or the function's returned dict, else ImageNet's defaults (224, 0.875, bilinear, the
ImageNet mean/std). The model takes normalised ``[N, 3, size, size]`` images and returns 1000
logits, for any batch size (export with a dynamic batch dimension); this is checked on a
batch of two when the model is built.

Identity: the file's sha256, or the sha256 of the function's module source, with the input
configuration in use: another file, another source or other preprocessing is another run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from robustbench_cgn import RunContext, Task, bounded
from robustbench_cgn.data.download import sha256_file
from robustbench_cgn.errors import ConfigError, DataNotFoundError, IncompatibleError
from robustbench_cgn_plugins.imagenet.tasks import ImageNetClassifier, InputConfig

NUM_CLASSES = 1000


@dataclass(frozen=True)
class InputFields:
    """Preprocessing given on the command line; empty values: from the model's side, else the
    ImageNet defaults."""

    size: int = bounded(0, min=0, max=4096)  # 0: from the model's side
    crop_pct: float = bounded(0.0, min=0.0, max=1.0)  # 0: from the model's side
    interpolation: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def _input_config(given: InputFields, declared: dict[str, Any], where: str) -> InputConfig:
    fields = {f.name for f in dataclasses.fields(InputConfig)}
    unknown = sorted(set(declared) - fields)
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{where}: unknown input config fields {unknown} (known: {known})")
    values = {**InputConfig().__dict__, **declared}
    given_values = {f.name: getattr(given, f.name) for f in dataclasses.fields(InputFields)}
    values.update({k: v for k, v in given_values.items() if v})
    values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
    for key in ("mean", "std"):
        if len(values[key]) != 3:
            raise ConfigError(f"{where}: {key} needs 3 values (RGB), got {values[key]}")
    try:
        return InputConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _first(exc: Exception) -> str:
    """The first sentence of an exception's message (torch's messages run on for lines)."""
    text = (str(exc).splitlines() or [""])[0].split(". ")[0]
    return text or type(exc).__name__


class BringYourOwn(ImageNetClassifier):
    """What the three kinds share: preprocessing, the check at build, identity."""

    example: ClassVar[str] = "FILE"
    has_eval_mode: ClassVar[bool] = True  # exported programs are fixed in the mode they were

    def _source(self) -> str:
        value = getattr(self.config, self.name_argument)
        if not value:
            raise ConfigError(f"{self.name}: say which model, e.g. -c {self.name}:{self.example}")
        return value

    # -- for files --

    def _file(self) -> Path:
        path = Path(self._source()).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"{self.name} model file {path} does not exist")
        return path

    def _sidecar(self) -> dict[str, Any]:
        path = self._file()
        sidecar = path.with_name(path.name + ".json")
        if not sidecar.is_file():
            return {}
        try:
            declared = json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{sidecar} is not JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(declared, dict):
            raise ConfigError(f"{sidecar} must hold an object of input config fields")
        return declared

    # -- shared --

    def declared_input(self) -> dict[str, Any]:
        return self._sidecar()

    def input_config(self) -> InputConfig:
        # asked for on every batch by prepare(): the sidecar is read once
        if getattr(self, "_input", None) is None:
            where = f"{self.name} classifier"
            self._input = _input_config(self.config, self.declared_input(), where)
        return self._input

    def identity(self, task: Task, ctx: RunContext) -> dict:
        return {"sha256": sha256_file(self._file()), "input": self.input_config().__dict__}

    def load(self) -> torch.nn.Module:
        raise NotImplementedError

    def build(self, task: Task, ctx: RunContext) -> None:
        model = self.load()
        config = self.input_config()
        model = (model.eval() if self.has_eval_mode else model).to(ctx.device)
        probe = torch.zeros(2, 3, config.size, config.size, device=ctx.device)
        try:
            with torch.no_grad():
                out = model(probe)
        except Exception as exc:
            first = _first(exc)
            raise IncompatibleError(
                f"{self.name} model fails on a [2, 3, {config.size}, {config.size}] batch "
                f"({type(exc).__name__}: {first}); declare its input size (and export it with "
                "a dynamic batch dimension)"
            ) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, NUM_CLASSES):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise IncompatibleError(
                f"{self.name} model returns {shape} for two images; ImageNet benchmarks need "
                f"[2, {NUM_CLASSES}] logits"
            )
        self.model = model


class FileClassifier(BringYourOwn):
    """A model in one file; subclasses say how to read it (:meth:`read`) and name the format."""

    name_argument = "file"
    format_name: ClassVar[str]

    @dataclass(frozen=True)
    class Config(InputFields):
        file: str = ""

    def read(self, path: Path) -> torch.nn.Module:
        raise NotImplementedError

    def load(self) -> torch.nn.Module:
        path = self._file()
        try:
            return self.read(path)
        except Exception as exc:
            message = f"{path} is not a {self.format_name} ({_first(exc)})"
            raise IncompatibleError(message) from None


class TorchScriptClassifier(FileClassifier):
    name = "torchscript"
    description = "your TorchScript file: torchscript:FILE (preprocessing: --set or FILE.json)"
    format_name = "TorchScript file"

    def read(self, path: Path) -> torch.nn.Module:
        with warnings.catch_warnings():  # the user chose the format: no deprecation notice
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated")
            return torch.jit.load(str(path), map_location="cpu")


class ExportedClassifier(FileClassifier):
    name = "exported"
    description = "your torch.export program: exported:FILE.pt2 (preprocessing: --set or .json)"
    format_name = "torch.export program"
    has_eval_mode = False

    def read(self, path: Path) -> torch.nn.Module:
        return torch.export.load(str(path)).module()


class PythonClassifier(BringYourOwn):
    name = "python"
    description = "your function: python:MODULE:FUNCTION returning a module (and input config)"
    name_argument = "target"
    example = "my_models:build"

    @dataclass(frozen=True)
    class Config(InputFields):
        target: str = ""

    def _function(self):
        target = self._source()
        module_name, sep, function_name = target.partition(":")
        if not sep or not module_name or not function_name:
            raise ConfigError(f"python classifier target {target!r} is not MODULE:FUNCTION")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name.split(".")[0] or os.getcwd() in sys.path:
                raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
            sys.path.insert(0, os.getcwd())  # a module next to where the command runs
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as again:
                raise ConfigError(f"cannot import {module_name!r}: {again}") from None
        function = getattr(module, function_name, None)
        if not callable(function):
            raise ConfigError(f"{module_name} has no function {function_name!r}")
        return module, function

    def _built(self) -> tuple[torch.nn.Module, dict[str, Any]]:
        cached = getattr(self, "_cache", None)
        if cached is None:
            _, function = self._function()
            made = function()
            model, declared = made if isinstance(made, tuple) else (made, {})
            if not isinstance(model, torch.nn.Module):
                raise ConfigError(
                    f"{self.config.target} returned {type(model).__name__}, not a torch module"
                )
            if not isinstance(declared, dict):
                raise ConfigError(f"{self.config.target}: the input config must be a dict")
            cached = self._cache = (model, declared)
        return cached

    def declared_input(self) -> dict[str, Any]:
        return self._built()[1]

    def identity(self, task: Task, ctx: RunContext) -> dict:
        module, _ = self._function()
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            raise ConfigError(f"the source of {module.__name__} cannot be read") from None
        return {
            "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
            "input": self.input_config().__dict__,
        }

    def load(self) -> torch.nn.Module:
        return self._built()[0]
