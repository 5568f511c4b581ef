from dataclasses import dataclass

import pytest

from robustbench_cgn import Generator, UnknownNameError
from robustbench_cgn.registry import RegistrationError, Registry, WeightsRegistry, WeightsSpec


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
