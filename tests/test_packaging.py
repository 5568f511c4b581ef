"""The renamed built-in folders must all be packaged (pyproject lists packages explicitly)."""

import tomllib

from conftest import REPO_ROOT

RENAMES = {
    "robustbench_cgn": "robustbench_cgn",
    "plugins": "robustbench_cgn_plugins",
    "benchmarks": "robustbench_cgn_benchmarks",
}


def test_every_package_folder_is_listed():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert {config["package-dir"][name] for name in RENAMES.values()} == set(RENAMES)
    found = set()
    for folder, import_name in RENAMES.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join([import_name, *relative.parts]))
    assert found == listed, f"missing: {found - listed}, stale: {listed - found}"


def test_import_names_do_not_clash():
    import robustbench_cgn_benchmarks
    import robustbench_cgn_plugins

    assert robustbench_cgn_plugins.__file__.endswith("plugins/__init__.py")
    assert robustbench_cgn_benchmarks.__file__.endswith("benchmarks/__init__.py")
