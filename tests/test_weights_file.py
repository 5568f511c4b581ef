"""One line with a reason for every way a weights file can be unreadable (issue 20: an empty
file used to say "cannot read CGN checkpoint ...: " with nothing after the colon)."""

from __future__ import annotations

import io

import pytest
import torch

from robustbench_cgn.errors import CGNBenchError, DataNotFoundError
from robustbench_cgn.weights_file import load_weights_file


def _saved(obj) -> bytes:
    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


GOOD = _saved({"w": torch.ones(3)})


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"<html><body>Quota exceeded</body></html>", "not a PyTorch weights file"),
        (GOOD[: len(GOOD) // 2], "failed finding central directory"),
        (_saved({"f": print}), "pickled code or objects (GLOBAL print)"),
    ],
    ids=["empty", "html", "truncated", "pickled-code"],
)
def test_unreadable_weights_are_one_line_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(CGNBenchError) as info:
        load_weights_file(path, "CGN checkpoint")
    message = str(info.value)
    assert message.startswith(f"cannot read CGN checkpoint {path}") and reason in message
    assert "\n" not in message and not message.rstrip().endswith(":")


def test_a_good_file_loads_and_a_missing_one_is_named(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(GOOD)
    assert torch.equal(load_weights_file(path, "x")["w"], torch.ones(3))
    with pytest.raises(DataNotFoundError, match="DCGAN weights not found: .*nope.pth"):
        load_weights_file(tmp_path / "nope.pth", "DCGAN weights")
