"""Packaging: every renamed folder is listed; the wheel carries its data and runs on its own."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
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


# --------------------------------------------------------------------------------------------
# the built wheel, installed into a fresh (non-editable) venv


def _copy_source(dest: Path) -> Path:
    """The repository's files without VCS, build and cache folders (the build writes there)."""
    ignore = shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".tox", ".venv*", ".ruff_cache"
    )
    return Path(shutil.copytree(REPO_ROOT, dest, ignore=ignore))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``python -m build --wheel`` of this checkout (no isolation: nothing to download)."""
    work = tmp_path_factory.mktemp("wheel")
    src = _copy_source(work / "src")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work)],
        cwd=src, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = work.glob("cgnbench-*.whl")
    return built


def test_wheel_holds_the_zoo_class_maps_references_and_a_torch_range(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"robustbench_cgn_plugins/mnist/weights/{p.name}"
        for p in (REPO_ROOT / "plugins" / "mnist" / "weights").iterdir()
    }
    expected |= {
        f"robustbench_cgn/{folder}/{p.name}"
        for folder, pattern in (("class_maps", "*.json"), ("references", "*.csv"))
        for p in (REPO_ROOT / "robustbench_cgn" / folder).glob(pattern)
    }
    assert any(n.endswith(".pth") for n in expected) and any("references" in n for n in expected)
    assert expected <= names, sorted(expected - names)
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in zf.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist: torch")
        ]
        entry_points = zf.read(meta.replace("METADATA", "entry_points.txt")).decode()
    torch_req = next(r for r in requires if r.startswith("torch") and "vision" not in r)
    assert ">=" in torch_req and "==" not in torch_req, requires  # a range: users bring CUDA
    assert "[cgnbench]" in entry_points and "cgnbench = robustbench_cgn.cli:main" in entry_points


def _site_packages() -> list[str]:
    import site

    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def test_wheel_runs_in_a_fresh_venv(wheel, tmp_path):
    """`cgnbench list` and a small main job from the installed wheel, outside the repository.

    The venv is new and holds only the wheel (``--no-deps``); its dependencies come from this
    interpreter's site-packages through a ``.pth`` file, whose lines are plain path entries:
    the editable install's finder there is not activated, so every cgnbench module, zoo file and
    entry point comes from the wheel (checked below).
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    (site_dir / "_cgnbench_test_deps.pth").write_text("\n".join(_site_packages()) + "\n")
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    subprocess.run(pip, check=True, timeout=300, capture_output=True)
    cgnbench = str(venv / "bin" / "cgnbench")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "CGNBENCH_PLUGINS"}}
    env |= {"CGNBENCH_HOME": str(tmp_path / "home"), "CGNBENCH_OFFLINE": "1"}
    cwd = tmp_path  # not the repository: nothing importable from the checkout

    where = subprocess.run(
        [str(python), "-c", "import robustbench_cgn, robustbench_cgn_plugins as p; "
         "print(robustbench_cgn.__file__); print(p.__file__)"],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=True,
    ).stdout.split()
    assert all(path.startswith(str(site_dir)) for path in where), where

    listing = subprocess.run(
        [cgnbench, "list", "weights"], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=300,
    )
    assert listing.returncode == 0, listing.stderr
    for tag in ("cgn.c-mnist", "cgn.dc-mnist", "cgn.w-mnist", "dcgan.c-mnist"):
        assert tag in listing.stdout, listing.stdout

    run = subprocess.run(
        [cgnbench, "-q", "run", "--generator", "cgn", "--benchmark", "c-mnist",
         "--set", "generator.n_counterfactuals=500", "--set", "classifier.epochs=1"],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "complete" in run.stdout and "test_acc=" in run.stdout, run.stdout
