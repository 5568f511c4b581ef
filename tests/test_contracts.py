"""What crosses a component boundary is checked there: one line naming the component, the field,
what was expected and what came (robustbench_cgn.contracts, wired into the runner)."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

import cgnbench_toy
import pytest
import torch
from conftest import run_cli
from torch.utils.data import TensorDataset

from robustbench_cgn import Generator, Task, TrainingSet
from robustbench_cgn.contracts import (
    ContractError,
    check_logits,
    check_metric_value,
    check_training_set,
)
from robustbench_cgn.plugin_manager import load_plugins
from robustbench_cgn.runner import Runner, RunRequest
from robustbench_cgn.settings import resolve_paths
from robustbench_cgn.store import ResultsStore

MNIST_LIKE = Task("colored-mnist", 10, (3, 32, 32), "mnist", value_range=(-1.0, 1.0))


def _set(images, labels, num_classes=10):
    return TrainingSet(TensorDataset(images, labels), num_classes)


def _labels(n=16):
    return torch.arange(n) % 10


GOOD = {
    "uint8 0..255": (torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), _labels()),
    "float32 in [-1, 1]": (torch.rand(16, 3, 32, 32) * 2 - 1, _labels()),
    "per-head label tensors": (
        torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8),
        torch.stack([_labels(), _labels().flip(0), _labels()], 1),
    ),
}
BAD = {  # case -> (images, labels, what the one line must say)
    "grey 28x28": (torch.rand(16, 1, 28, 28) * 2 - 1, _labels(), "expected [3, 32, 32]"),
    "channels last": (
        torch.rand(16, 32, 32, 3) * 2 - 1, _labels(), "got [32, 32, 3] (channels last?"
    ),
    "float64": (torch.rand(16, 3, 32, 32, dtype=torch.float64) * 2 - 1, _labels(), "got float64"),
    "float labels": (torch.rand(16, 3, 32, 32) * 2 - 1, _labels().float(), "got float32 (0.0)"),
    "labels out of range": (
        torch.rand(16, 3, 32, 32) * 2 - 1, _labels() + 5, "integers in 0..9, got 10"
    ),
    "floats in [0, 1]": (torch.rand(16, 3, 32, 32), _labels(), "images in [0, 1]?"),
    "floats in 0..255": (torch.rand(16, 3, 32, 32) * 255, _labels(), "got [0"),
    "NaN pixels": (torch.full((16, 3, 32, 32), float("nan")), _labels(), "NaN"),
}


@pytest.mark.parametrize("case", GOOD)
def test_training_sets_that_keep_the_contract_pass(case):
    check_training_set(_set(*GOOD[case]), MNIST_LIKE, "good-gen")


@pytest.mark.parametrize("case", BAD)
def test_each_training_set_violation_is_one_line_naming_the_plugin(case):
    images, labels, says = BAD[case]
    with pytest.raises(ContractError) as info:
        check_training_set(_set(images, labels), MNIST_LIKE, "my-gen")
    message = str(info.value)
    assert "\n" not in message and message.startswith("generator 'my-gen': ")
    assert says in message, message


def test_the_check_draws_no_random_numbers_from_training():
    class Jittered(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.rand(3, 32, 32) * 2 - 1, i  # a random transform, as augmentations are

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_training_set(TrainingSet(Jittered(), 10), MNIST_LIKE, "jitter")
    assert torch.equal(torch.rand(3), expected)


def test_logits_and_metrics_contracts():
    good = {"": torch.zeros(4, 10), "shape": torch.zeros(4, 10)}
    assert check_logits(good, 4, 10, "clf") is good
    for outputs, says in (
        (torch.zeros(4, 10), "must return a mapping head -> logits"),
        ({"": torch.zeros(4, 9)}, "logits of the main head: expected [4, 10], got [4, 9]"),
        ({"texture": torch.zeros(10)}, "logits of head 'texture': expected [4, 10], got [10]"),
        ({"": torch.full((4, 10), float("inf"))}, "non-finite"),
        ({"": torch.zeros(4, 10, dtype=torch.long)}, "expected floats, got int64"),
    ):
        with pytest.raises(ContractError, match="^classifier 'clf': ") as info:
            check_logits(outputs, 4, 10, "clf")
        assert says in str(info.value)
    check_metric_value("acc", "", 97.5, "bench")
    with pytest.raises(ContractError, match=r"benchmark 'bench': metric acc\[head=x\]: .* nan"):
        check_metric_value("acc", "head=x", float("nan"), "bench")


class ChannelsLastBlobs(Generator):
    """The toy data transposed to channels last: a plugin author's mistake."""

    name = "nhwc-blobs"
    tasks = ("toy-*",)

    @dataclass(frozen=True)
    class Config:
        n: int = 200

    def identity(self, task, ctx):
        return {}

    def generate(self, task, ctx):
        images, labels = cgnbench_toy.make_toy_images(self.config.n, 1.0, ctx.generator(1))
        return TrainingSet(TensorDataset(images.permute(0, 2, 3, 1), labels), task.num_classes)


class bad_plugin:  # noqa: N801 - a plugin namespace
    @staticmethod
    @cgnbench_toy.hookimpl
    def register_generators(registry):
        registry.add(ChannelsLastBlobs)


def test_the_runner_checks_the_generator_before_training(tmp_path):
    system = load_plugins(
        autoload=False,
        builtins=False,
        extra_plugins=[("toy", cgnbench_toy), ("bad", bad_plugin)],
    )
    store = ResultsStore(tmp_path / "results.sqlite")
    try:
        runner = Runner(system, store, resolve_paths(tmp_path))
        with pytest.raises(ContractError, match=r"^generator 'nhwc-blobs': image shape .* got "
                                                r"\[8, 8, 1\] \(channels last\?"):
            runner.run(RunRequest(generator="nhwc-blobs", benchmark="toy-shift", device="cpu"))
        assert not list((tmp_path / "runs").glob("*/checkpoints/*"))  # nothing trained
    finally:
        store.close()


def test_the_cli_says_it_in_one_line(tmp_path, monkeypatch, toy_plugin_env):
    module = tmp_path / "nhwc_plugin.py"
    module.write_text(textwrap.dedent('''
        from dataclasses import dataclass

        import cgnbench_toy
        from torch.utils.data import TensorDataset

        from robustbench_cgn import Generator, TrainingSet, hookimpl


        class ChannelsLastBlobs(Generator):
            name = "nhwc-blobs"
            tasks = ("toy-*",)

            def identity(self, task, ctx):
                return {}

            def generate(self, task, ctx):
                images, labels = cgnbench_toy.make_toy_images(200, 1.0, ctx.generator(1))
                data = TensorDataset(images.permute(0, 2, 3, 1), labels)
                return TrainingSet(data, task.num_classes)


        @hookimpl
        def register_generators(registry):
            registry.add(ChannelsLastBlobs)
    '''))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("CGNBENCH_PLUGINS", "cgnbench_toy,nhwc_plugin")
    result = run_cli("run", "-g", "nhwc-blobs", "-b", "toy-shift", "--device", "cpu", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "generator 'nhwc-blobs': image shape" in lines[0], lines
