"""The layers' import rules (docs/architecture.md), checked on the source so they cannot erode.

engine (robustbench_cgn) <- domain tasks (robustbench_cgn_plugins.<domain>.tasks)
    <- domain plugins (generators, classifiers, commands) and benchmarks (per domain)
with ``robustbench_cgn_plugins.shared`` (model parts two domains use) below the domains, and
the entry modules (``generators``, ``classifiers``, ``original``, ``pretrained``) composing them.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from conftest import REPO_ROOT

PACKAGES = {  # import name -> folder
    "robustbench_cgn": "robustbench_cgn",
    "robustbench_cgn_plugins": "plugins",
    "robustbench_cgn_benchmarks": "benchmarks",
}
# The ImageNet CGN is part of the ImageNet world.
DOMAIN_OF_PACKAGE = {"mnist": "mnist", "imagenet": "imagenet", "imagenet_cgn": "imagenet"}
COMPOSITION = {"generators", "classifiers", "original", "pretrained"}


def _modules(root: Path):
    """(module name, path, imported module names) for every source file under ``root``."""
    for name, folder in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [name, *path.relative_to(root / folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            module = ".".join(parts)
            package = module if is_package else module.rpartition(".")[0]
            imported = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")[: len(package.split(".")) - node.level + 1]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    imported.add(target)
                    imported |= {f"{target}.{alias.name}" for alias in node.names}
            yield module, path, imported


def _layer(module: str) -> tuple[str, str | None]:
    """(layer, domain): engine, cli, shared, composition, tasks, plugin, benchmarks, other."""
    parts = module.split(".")
    if parts[0] == "robustbench_cgn":
        return ("cli" if len(parts) > 1 and parts[1] in ("cli", "__main__") else "engine"), None
    if parts[0] == "robustbench_cgn_benchmarks":
        return "benchmarks", (parts[1] if len(parts) > 1 and parts[1] in ("mnist", "imagenet")
                              else None)
    if parts[0] == "robustbench_cgn_plugins":
        if len(parts) == 1 or parts[1] in COMPOSITION:
            return "composition", None
        if parts[1] == "shared":
            return "shared", None
        domain = DOMAIN_OF_PACKAGE.get(parts[1])
        return ("tasks" if len(parts) > 2 and parts[2] == "tasks" else "plugin"), domain
    return "other", None


def violations(root: Path) -> list[str]:
    """One line per broken rule: the file and what it imports."""
    found: list[str] = []
    for module, path, imported in _modules(root):
        layer, domain = _layer(module)
        where = path.relative_to(root)
        for target in sorted(imported):
            t_layer, t_domain = _layer(target)
            top = target.split(".")[0]
            if top == "click" and layer != "cli":
                found.append(f"{where}: imports click (only the CLI may)")
            if t_layer == "other":
                continue
            if t_layer == "cli" and layer != "cli":
                found.append(f"{where}: imports the CLI ({target})")
            elif layer in ("engine", "cli") and t_layer not in ("engine", "cli"):
                found.append(f"{where}: the engine imports a domain ({target})")
            elif layer == "shared" and t_layer not in ("engine", "shared"):
                found.append(f"{where}: shared parts import a domain ({target})")
            elif layer in ("tasks", "plugin") and t_layer in ("tasks", "plugin"):
                if t_domain != domain:
                    found.append(f"{where}: the {domain} domain imports the {t_domain} one")
                elif layer == "tasks" and t_layer == "plugin":
                    found.append(f"{where}: a task module imports a plugin module ({target})")
            elif layer in ("tasks", "plugin", "shared") and t_layer in ("benchmarks",
                                                                        "composition"):
                found.append(f"{where}: a plugin imports {t_layer} ({target})")
            elif layer == "benchmarks":
                if t_layer in ("plugin", "composition", "shared"):
                    found.append(f"{where}: a benchmark imports a plugin module ({target})")
                elif t_layer == "tasks" and t_domain != domain:
                    found.append(f"{where}: a {domain} benchmark imports {t_domain} tasks")
                elif t_layer == "benchmarks" and domain and t_domain not in (domain, None):
                    found.append(f"{where}: a {domain} benchmark imports {t_domain} benchmarks")
    return sorted(set(found))


def test_the_source_keeps_the_import_rules():
    assert violations(REPO_ROOT) == []


def _copy(tmp_path: Path) -> Path:
    for folder in PACKAGES.values():
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "weights"))
    return tmp_path


def test_a_planted_violation_of_each_rule_is_found(tmp_path):
    root = _copy(tmp_path)
    planted = {
        "robustbench_cgn/leak.py": "from robustbench_cgn_plugins.mnist.tasks import TASKS\n",
        "benchmarks/mnist/leak.py": "from robustbench_cgn_plugins.mnist.cgn_generator import x\n",
        "benchmarks/imagenet/leak.py": "from robustbench_cgn_plugins.mnist.tasks import TASKS\n",
        "plugins/mnist/leak.py": "from ..imagenet.tasks import IMAGENET_TASK\n",
        "plugins/mnist/tasks/leak.py": "from ..classifier import MnistCNN\n",
        "plugins/shared/leak.py": "import robustbench_cgn_plugins.mnist.tasks\n",
        "plugins/imagenet/leak.py": "from robustbench_cgn.cli.app import App\nimport click\n",
    }
    for relative, source in planted.items():
        (root / relative).write_text(source)
    found = violations(root)
    assert {line.split(":")[0] for line in found} == set(planted), found  # each, and only those
    assert [line for line in found if "click" in line] == [
        "plugins/imagenet/leak.py: imports click (only the CLI may)"
    ]


def _environ_reads(path: Path):
    """``(line, argument node)`` of every ``os.environ.get(X)``, ``os.environ[X]``,
    ``os.getenv(X)`` and ``X in os.environ`` in a source file."""

    def is_environ(node) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            func = node.func
            if (func.attr == "get" and is_environ(func.value)) or func.attr == "getenv":
                yield node.lineno, node.args[0]
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "env_flag":
            yield node.lineno, node.args[0]
        elif isinstance(node, ast.Subscript) and is_environ(node.value):
            if not isinstance(node.ctx, ast.Store):
                yield node.lineno, node.slice
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            yield node.lineno, node.left


def _variable(module_name: str, node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        import importlib

        return getattr(importlib.import_module(module_name), node.id, None)
    return None  # computed (e.g. a spec's env field): only the resolver does that


def test_one_place_reads_weights_and_data_environment_variables():
    """Issue 19: the resolver is the only reader of weights/data variables (the registered
    specs' legacy ones, CGNBENCH_WEIGHTS, CGNBENCH_MIRROR); computed names too."""
    from robustbench_cgn.plugin_manager import load_plugins

    registries = load_plugins().registries
    specs = [e.spec for e in registries.weights] + [e.spec for e in registries.datasets]
    forbidden = {s.env for s in specs if s.env} | {"CGNBENCH_WEIGHTS", "CGNBENCH_MIRROR"}
    assert {"CGNBENCH_CGN_IMAGENET_WEIGHTS", "CGNBENCH_WMNIST_TEXTURES"} <= forbidden
    readers = []
    for module, path, _ in _modules(REPO_ROOT):
        for line, node in _environ_reads(path):
            variable = _variable(module, node)
            if module == "robustbench_cgn.settings" and getattr(node, "id", "") == "name":
                continue  # env_flag(name): its callers' names are checked where they call it
            if variable is None or variable in forbidden:
                readers.append(f"{path.relative_to(REPO_ROOT)}:{line} {variable}")
    assert readers and all(r.startswith("robustbench_cgn/resolver.py:") for r in readers), readers
