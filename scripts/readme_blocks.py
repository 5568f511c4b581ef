"""The generated blocks of README.md: text between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` that a script prints and ``--write`` puts in place, and that
``tests/test_readme.py`` compares with the script's output."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def block(text: str, name: str) -> str:
    """What README ``text`` holds between the markers of ``name``."""
    start, end = markers(name)
    return text[text.index(start) + len(start) : text.index(end)].strip()


def write(name: str, made: str, readme: Path = README) -> None:
    start, end = markers(name)
    text = readme.read_text()
    head, tail = text.index(start) + len(start), text.index(end)
    readme.write_text(f"{text[:head]}\n{made}\n{text[tail:]}")


def main(name: str, make: Callable[[], str], description: str) -> None:
    """Print ``make()``, or with ``--write`` put it in README.md."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--write", action="store_true", help="replace the block in README.md")
    made = make()
    if parser.parse_args().write:
        write(name, made)
    else:
        print(made)
