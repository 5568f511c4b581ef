"""Print the README's table of registered weights and datasets (name, kind, size, checksum,
source) from ``cgnbench list --format json``; ``tests/test_readme.py`` checks that README.md
holds exactly this output between its ``artifacts-table`` markers.

    python scripts/artifacts_table.py            # print the table
    python scripts/artifacts_table.py --write    # replace it in README.md
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_blocks  # noqa: E402  (a sibling script module)

BLOCK = "artifacts-table"


def _size(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


def _source(text: str) -> str:
    if text.startswith("package:"):
        return "shipped in the package"
    if text.startswith("gdrive:"):
        return f"Google Drive `{text.removeprefix('gdrive:')}`"
    return f"<{text}>" if "://" in text else text


def table() -> str:
    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "robustbench_cgn", "--no-autoload", "list", "-f", "json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    lines = ["| name | kind | size | checksum | source |", "|---|---|---|---|---|"]
    for kind in ("weights", "datasets"):
        for row in listed[kind]:
            cells = (row["name"], kind, _size(row["size"]), row["checksum"], _source(row["source"]))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_block(text: str) -> str:
    return readme_blocks.block(text, BLOCK)


def main() -> None:
    readme_blocks.main(BLOCK, table, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
