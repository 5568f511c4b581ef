"""Every registered component (built-ins and the example plugin) honours the contract."""

import dataclasses

import cgnbench_toy
import pytest

from robustbench_cgn.plugin_manager import load_plugins

SYSTEM = load_plugins(extra_plugins=[("toy", cgnbench_toy)])
REG = SYSTEM.registries


def test_builtins_load_without_problems():
    assert SYSTEM.problems == []
    assert {"original", "cgn"} <= set(REG.generators.names())
    assert "mnist-cnn" in REG.classifiers
    assert {"c-mnist", "dc-mnist", "w-mnist"} <= set(REG.benchmarks.names())


ALL = [
    pytest.param(entry, id=f"{kind}:{entry.name}")
    for kind in ("generators", "classifiers", "benchmarks")
    for entry in REG.by_kind(kind)
]


@pytest.mark.parametrize("entry", ALL)
def test_metadata_and_config(entry):
    cls = entry.cls
    assert cls.description and cls.version and entry.plugin
    assert dataclasses.is_dataclass(cls.Config)
    assert cls.Config.__dataclass_params__.frozen, "configs are frozen (hashable, safe)"
    component = cls()
    assert dataclasses.asdict(component.config) == entry.defaults()


@pytest.mark.parametrize("entry", [p for p in ALL if "benchmarks" in p.id])
def test_benchmarks_declare_metrics_and_a_runnable_default(entry):
    cls = entry.cls
    mains = [spec for spec in cls.metrics if spec.main]
    assert len(mains) == 1 and all(spec.protocol for spec in cls.metrics)
    assert len({spec.name for spec in cls.metrics}) == len(cls.metrics)
    if cls.default_classifier is not None:
        assert REG.classifiers.get(cls.default_classifier).cls.supports(cls.task)
    assert any(REG.generators.get(n).cls.supports(cls.task) for n in REG.generators.names())


@pytest.mark.parametrize("entry", [p for p in ALL if "benchmarks" not in p.id])
def test_generators_and_classifiers_serve_some_benchmark(entry):
    assert any(entry.cls.supports(b.cls.task) for b in REG.benchmarks)
