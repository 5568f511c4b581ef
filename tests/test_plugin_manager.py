"""Hook registration, blocking, autoload switch and broken-plugin isolation."""

import types
from importlib import metadata

import cgnbench_toy
import pytest

from robustbench_cgn import hookimpl
from robustbench_cgn.plugin_manager import PluginError, PluginWarning, load_plugins


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint, as pluggy's own tests do."""

    def __init__(self, name, target, dist_name="fake-dist", version="9.9"):
        self.name, self._target = name, target
        self.value = f"{name}_module"
        self.dist = types.SimpleNamespace(name=dist_name, version=version)

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def module_with(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, function in hooks.items():
        setattr(module, name, hookimpl(function))
    return module


def test_entry_point_plugin_is_registered_with_distribution_info():
    system = load_plugins(entry_points=lambda: [FakeEntryPoint("toy", cgnbench_toy)])
    assert system.registries.generators.get("toy-blobs").plugin == "toy"
    info = {p.name: p for p in system.plugins}["toy"]
    assert info.distribution == "fake-dist" and info.version == "9.9"
    assert info.hooks == ["register_benchmarks", "register_classifiers", "register_generators"]


def test_builtins_come_through_the_real_entry_point_group():
    names = {ep.name for ep in metadata.entry_points(group="cgnbench")}
    assert {"builtin-generators", "builtin-classifiers", "builtin-benchmarks"} <= names
    system = load_plugins()
    loaded = {p.name for p in system.plugins}
    assert {"builtin-generators", "builtin-classifiers", "builtin-benchmarks"} <= loaded


def test_autoload_off_by_environment(monkeypatch):
    monkeypatch.setenv("CGNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    system = load_plugins(entry_points=lambda: [FakeEntryPoint("toy", cgnbench_toy)])
    assert system.plugins == [] and len(system.registries.generators) == 0
    system = load_plugins(extra_plugins=[("toy", cgnbench_toy)])
    assert "toy-blobs" in system.registries.generators


def test_autoload_off_keeps_the_builtins_as_pytest_keeps_its_core_plugins():
    eps = lambda: [  # noqa: E731
        FakeEntryPoint("toy", cgnbench_toy),
        FakeEntryPoint("builtin-toy", cgnbench_toy, dist_name="cgnbench"),
    ]
    system = load_plugins(entry_points=eps, autoload=False)
    assert [p.name for p in system.plugins] == ["builtin-toy"]
    assert [p.name for p in load_plugins(entry_points=eps, builtins=False).plugins] == ["toy"]
    real = load_plugins(autoload=False)
    assert "cgn" in real.registries.generators and "c-mnist" in real.registries.benchmarks


def test_strict_mode_raises_with_the_plugins_own_error(monkeypatch):
    eps = lambda: [FakeEntryPoint("broken", ImportError("No module named 'missing_dep'"))]  # noqa: E731
    with pytest.raises(PluginError, match="broken.*missing_dep") as info:
        load_plugins(entry_points=eps, strict=True)
    assert isinstance(info.value.__cause__, ImportError)

    def register_generators(registry):
        raise RuntimeError("boom")

    bad = lambda: [FakeEntryPoint("bad", module_with(register_generators=register_generators))]  # noqa: E731
    monkeypatch.setenv("CGNBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="bad.*register_generators failed.*boom"):
        load_plugins(entry_points=bad)
    monkeypatch.setenv("CGNBENCH_STRICT_PLUGINS", "0")
    with pytest.warns(PluginWarning):
        failed = load_plugins(entry_points=eps).failed
    assert [p.name for p in failed] == ["broken"]


def test_plugins_variable_naming_an_installed_plugin_is_not_an_error(monkeypatch, recwarn):
    monkeypatch.setenv("CGNBENCH_PLUGINS", "cgnbench_toy")
    system = load_plugins(entry_points=lambda: [FakeEntryPoint("toy", cgnbench_toy)])
    assert system.problems == [] and [p.name for p in system.plugins] == ["toy"]
    assert not [w for w in recwarn if issubclass(w.category, PluginWarning)]


def test_blocking_by_argument_and_environment(monkeypatch):
    eps = lambda: [FakeEntryPoint("toy", cgnbench_toy)]  # noqa: E731
    assert "toy-blobs" not in load_plugins(entry_points=eps, blocked=["toy"]).registries.generators
    monkeypatch.setenv("CGNBENCH_BLOCK_PLUGINS", "other, toy")
    system = load_plugins(entry_points=eps)
    assert "toy-blobs" not in system.registries.generators
    assert system.blocked == ["other", "toy"]


def test_plugins_from_environment_variable(monkeypatch):
    monkeypatch.setenv("CGNBENCH_PLUGINS", "cgnbench_toy")
    system = load_plugins(autoload=False)
    assert "toy-linear" in system.registries.classifiers


def test_import_error_is_a_warning_and_others_still_load():
    eps = lambda: [  # noqa: E731
        FakeEntryPoint("broken", ImportError("No module named 'missing_dep'")),
        FakeEntryPoint("toy", cgnbench_toy),
    ]
    with pytest.warns(PluginWarning, match="broken.*missing_dep"):
        system = load_plugins(entry_points=eps)
    assert "toy-blobs" in system.registries.generators
    assert [p.plugin for p in system.problems] == ["broken"]


def test_hook_that_raises_is_isolated_and_its_partial_entries_dropped():
    def register_generators(registry):
        registry.add(cgnbench_toy.ToyBlobs)
        raise RuntimeError("boom")

    eps = lambda: [FakeEntryPoint("bad", module_with(register_generators=register_generators))]  # noqa: E731
    with pytest.warns(PluginWarning, match="bad.*boom"):
        system = load_plugins(entry_points=eps)
    assert len(system.registries.generators) == 0


def test_clashing_name_warns_naming_the_plugin_and_first_wins():
    class Impostor(cgnbench_toy.ToyBlobs):
        description = "impostor"

    clash = module_with(register_generators=lambda registry: registry.add(Impostor))
    eps = lambda: [FakeEntryPoint("toy", cgnbench_toy), FakeEntryPoint("zz-clash", clash)]  # noqa: E731
    with pytest.warns(PluginWarning, match="zz-clash.*clashes.*toy"):
        system = load_plugins(entry_points=eps)
    assert system.registries.generators.get("toy-blobs").cls is cgnbench_toy.ToyBlobs


def test_invalid_hook_name_is_reported():
    module = types.ModuleType("typo")
    module.register_generatorz = hookimpl(lambda registry: None)
    with pytest.warns(PluginWarning, match="typo.*unknown hook.*register_generatorz"):
        system = load_plugins(autoload=False, builtins=False, extra_plugins=[("typo", module)])
    assert system.plugins == []


def test_register_commands_hook_adds_cli_commands():
    import click

    @click.command("hello")
    def hello():
        click.echo("hi")

    module = module_with(register_commands=lambda cli: cli.add_command(hello))
    system = load_plugins(autoload=False, builtins=False, extra_plugins=[("cmds", module)])
    group = click.Group()
    system.add_commands(group)
    assert "hello" in group.commands
