"""The example third-party plugin, really installed: discovered through its entry point."""

import json

import pytest
from conftest import EXAMPLE_PLUGIN_DIR, pip_install_example, run_cli


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    return pip_install_example(EXAMPLE_PLUGIN_DIR, tmp_path_factory)


def test_installed_plugin_is_found_through_entry_point(installed_plugin, monkeypatch, tmp_path):
    monkeypatch.delenv("CGNBENCH_PLUGINS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(installed_plugin))
    monkeypatch.chdir(tmp_path)  # nothing importable from the repository checkout
    data = json.loads(run_cli("plugins", "--json").stdout)
    toy = {p["name"]: p for p in data["plugins"]}["toy"]
    assert toy["distribution"] == "cgnbench-toy-plugin" and toy["version"] == "1.0.0"
    assert "toy-blobs" in run_cli("list").stdout

    run_cli(
        "run",
        "-g",
        "toy-blobs",
        "-b",
        "toy-shift",
        "--device",
        "cpu",
        "-q",
        "--set",
        "classifier.epochs=1",
    )
    out = tmp_path / "lb.csv"
    run_cli("leaderboard", "--format", "csv", "-o", str(out))
    assert "toy-blobs,toy-linear" in out.read_text()

    blocked = run_cli("--block", "toy", "list", "generators").stdout
    assert "toy-blobs" not in blocked
