"""README tables are made by commands, not typed: each is checked against its command."""

from __future__ import annotations

import importlib.util

from conftest import REPO_ROOT


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_weights_and_data_table_is_the_registries():
    script = _script("artifacts_table")
    made = script.table()
    assert "| in9 | datasets |" in made and "| cgn-imagenet.authors | weights |" in made
    readme = (REPO_ROOT / "README.md").read_text()
    assert script.readme_block(readme) == made, (
        "README's weights/data table is stale: run `python scripts/artifacts_table.py --write`"
    )


def test_the_speed_tables_are_the_benchmark_records():
    script = _script("speed_table")
    made = script.tables()
    assert "| 16 | reference |" in made and "counterfactuals, 10 per mask" in made
    readme = (REPO_ROOT / "README.md").read_text()
    assert script.readme_block(readme) == made, (
        "README's speed tables are stale: run `python scripts/speed_table.py --write`"
    )
