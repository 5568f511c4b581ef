"""The hooks a cgnbench plugin can implement: the whole contract with plugin authors.

A plugin is a module (or object) exposed through the ``cgnbench`` entry-point group::

    # pyproject.toml of your plugin package
    [project.entry-points.cgnbench]
    my-plugin = "my_package.cgnbench_plugin"

    # my_package/cgnbench_plugin.py
    from robustbench_cgn import hookimpl

    @hookimpl
    def register_generators(registry):
        registry.add(MyGenerator)

Every hook receives a registry; ``registry.add`` records which plugin added the entry.
The built-in generators, classifiers and benchmarks are registered through exactly these hooks
and the same entry-point group.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "cgnbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_generators(registry) -> None:
    """Add :class:`~robustbench_cgn.components.Generator` subclasses with ``registry.add(cls)``."""


@hookspec
def register_classifiers(registry) -> None:
    """Add :class:`~robustbench_cgn.components.Classifier` subclasses with ``registry.add(cls)``."""


@hookspec
def register_benchmarks(registry) -> None:
    """Add :class:`~robustbench_cgn.components.Benchmark` subclasses with ``registry.add(cls)``."""


@hookspec
def register_tasks(registry) -> None:
    """Add tasks (:class:`~robustbench_cgn.components.Task`): name, classes, image contract,
    splits and their loader. Benchmarks pose them; ``original`` serves every task with a
    ``train`` split; other plugins read them with :func:`robustbench_cgn.get_task`."""


@hookspec
def register_weights(registry) -> None:
    """Add named weights (:class:`~robustbench_cgn.artifacts.WeightsSpec`, e.g. ``cgn.c-mnist``):
    where each file comes from (URLs, mirrors), its checksum, size, licence and citation."""


@hookspec
def register_datasets(registry) -> None:
    """Add datasets ``cgnbench fetch`` can download (``in9``, ...): each a
    :class:`~robustbench_cgn.artifacts.DatasetSpec` with release files, checksums, the folder
    they unpack to and the licence."""


@hookspec
def register_commands(cli) -> None:
    """Add click commands to the ``cgnbench`` command group, e.g. ``cli.add_command(cmd)``."""
