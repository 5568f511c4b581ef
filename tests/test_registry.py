from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from robustbench_cgn import Generator, Task, TrainingSet, UnknownNameError, get_task
from robustbench_cgn.errors import IncompatibleError
from robustbench_cgn.registry import (
    RegistrationError,
    Registry,
    TaskRegistry,
    WeightsRegistry,
    WeightsSpec,
)
from robustbench_cgn_plugins.original import OriginalGenerator


def make_generator(gen_name: str) -> type[Generator]:
    class Made(Generator):
        name = gen_name
        description = f"the {gen_name} generator"

        @dataclass(frozen=True)
        class Config:
            n: int = 3

        def generate(self, task, ctx):
            return None

    return Made


@pytest.fixture
def registry():
    reg = Registry("generator", Generator)
    for name in ("cgn", "cgn-imagenet", "dcgan", "original"):
        reg.add(make_generator(name), plugin="test")
    return reg


def test_wildcard_listing(registry):
    assert registry.names("cgn*") == ["cgn", "cgn-imagenet"]
    assert registry.names("*gan") == ["dcgan"]
    assert registry.names() == ["cgn", "cgn-imagenet", "dcgan", "original"]


def test_entry_metadata(registry):
    entry = registry.get("dcgan")
    assert entry.plugin == "test"
    assert entry.description == "the dcgan generator"
    assert entry.version == "0.1.0"
    assert entry.defaults() == {"n": 3}


def test_unknown_name_suggests_close_matches(registry):
    with pytest.raises(UnknownNameError) as info:
        registry.get("dcgna")
    assert "dcgan" in str(info.value)
    assert info.value.suggestions[0] == "dcgan"


def test_unknown_name_without_close_match_lists_available(registry):
    with pytest.raises(UnknownNameError, match="available: cgn, cgn-imagenet"):
        registry.get("zzzzzz")


def test_clash_is_refused_naming_both_plugins(registry):
    with pytest.raises(RegistrationError, match="'other'.*'test'"):
        registry.add(make_generator("cgn"), plugin="other")


def test_only_subclasses_of_the_kind(registry):
    with pytest.raises(RegistrationError):
        registry.add(object, plugin="test")  # type: ignore[arg-type]


def test_remove_plugin(registry):
    registry.remove_plugin("test")
    assert len(registry) == 0


def test_weights_registry_names_and_tags():
    weights = WeightsRegistry()
    spec = WeightsSpec(
        "cgn.c-mnist", source="pkg://x.pth", tags=("mnist",), preprocessing={"range": [-1, 1]}
    )
    weights.add(spec, plugin="p")
    assert spec.component == "cgn" and spec.tag == "c-mnist"
    assert weights.names("cgn.*") == ["cgn.c-mnist"]
    with pytest.raises(RegistrationError):
        weights.add(WeightsSpec("nodot", source="x"), plugin="p")
    with pytest.raises(UnknownNameError, match="cgn.c-mnist"):
        weights.get("cgn.c-mnst")


def test_task_registry_and_the_public_task_api(tmp_path):
    def loader(split, ctx, seed):
        return TrainingSet(TensorDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])), 2,
                           {"split": split, "seed": seed})  # fmt: skip

    with_data = Task("tiny", 2, (1, 4, 4), splits=("train",), loader=loader,
                     data_identity=lambda ctx: {"source": "zeros"})  # fmt: skip
    tasks = TaskRegistry()
    tasks.add(with_data, plugin="p")
    assert tasks.names("t*") == ["tiny"] and tasks.get("tiny").task is with_data
    with pytest.raises(RegistrationError, match="clashes"):
        tasks.add(Task("tiny", 3, (1, 4, 4)), plugin="q")
    with pytest.raises(RegistrationError, match="Task objects"):
        tasks.add("tiny", plugin="q")  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="did you mean 'tiny'"):
        tasks.get("tinny")
    assert with_data.load("train", None, seed=3).provenance == {"split": "train", "seed": 3}
    assert with_data.identity(None) == {"source": "zeros"}
    with pytest.raises(IncompatibleError, match="task 'tiny' has no 'test' split .*: train"):
        with_data.load("test", None)
    # inside a run, get_task reads the run's registry; outside, the installed plugins'
    assert get_task("tiny", SimpleNamespace(tasks=tasks)) is with_data
    assert get_task("colored-mnist").splits == ("train", "test")
    assert OriginalGenerator.supports(with_data)
    assert not OriginalGenerator.supports(get_task("imagenet"))  # no train split offline


def test_presets_register_named_variants_of_one_family(registry):
    class Family(Generator):
        description = "a family"
        level = 0

        def generate(self, task, ctx):  # pragma: no cover - not run
            return None

    low = registry.add_preset(Family, "fam-low", plugin="p", level=1)
    high = registry.add_preset(Family, "fam-high", plugin="p", level=2, description="high")
    assert registry.names("fam-*") == ["fam-high", "fam-low"]
    assert issubclass(low, Family) and (low.level, high.level) == (1, 2)
    assert registry.get("fam-high").description == "high" and low.description == "a family"
    assert low.preset_of == "Family" and registry.get("fam-low").plugin == "p"
    with pytest.raises(RegistrationError, match="sets colour, which Family does not have"):
        registry.add_preset(Family, "fam-bad", plugin="p", colour="red")
    with pytest.raises(RegistrationError, match="clashes"):
        registry.add_preset(Family, "fam-low", plugin="q", level=3)
