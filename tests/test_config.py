from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustbench_cgn.config import (
    build_config,
    coerce,
    config_as_dict,
    load_config_file,
    parse_set_options,
)
from robustbench_cgn.errors import ConfigError


@dataclass(frozen=True)
class Options:
    epochs: int = 10
    lr: float = 1.0
    edge_loss: bool = False
    mode: Literal["faithful", "improved"] = "faithful"
    weights: tuple[float, ...] = (0.05, 0.1, 0.01, 0.0)
    path: Path | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")


def test_defaults_and_typed_overrides():
    config = build_config(
        Options,
        {
            "epochs": "3",
            "lr": "2e-4",
            "edge_loss": "yes",
            "mode": "improved",
            "weights": "0,1,2,3",
            "path": "none",
        },
        owner="x",
    )
    assert config == Options(3, 2e-4, True, "improved", (0.0, 1.0, 2.0, 3.0), None)
    assert config_as_dict(build_config(Options, {"path": "/a"}, owner="x"))["path"] == "/a"


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("epochs", "ten", "expected an integer"),
        ("epochs", "2.5", "expected an integer"),
        ("lr", "nan", "finite number"),
        ("edge_loss", "maybe", "true/false"),
        ("mode", "fast", "one of 'faithful', 'improved'"),
        ("epoch", "3", "did you mean epochs"),
        ("epochs", "0", "epochs must be >= 1"),
    ],
)
def test_bad_values_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        build_config(Options, {key: value}, owner="classifier 'x'")


def test_scientific_integers():
    assert coerce("1e5", int) == 100_000
    assert coerce("100_000", int) == 100_000


def test_parse_set_options():
    assert parse_set_options(["generator.n=1e5", "classifier.epochs = 2"]) == {
        "generator": {"n": "1e5"},
        "classifier": {"epochs": "2"},
    }
    for bad in ["epochs=2", "run.seed=1", "generator.n"]:
        with pytest.raises(ConfigError):
            parse_set_options([bad])
    # train-generator's options: one section, which a bare key belongs to
    parsed = parse_set_options(["iterations=5", "training.batch_size=8"], ("training",), "training")
    assert parsed == {"training": {"iterations": "5", "batch_size": "8"}}
    with pytest.raises(ConfigError, match="must start with one of training"):
        parse_set_options(["generator.n=5"], ("training",), "training")


def test_config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\ngenerator = "cgn"\nseeds = [0, 1]\n[classifier]\nepochs = 2\n')
    data = load_config_file(path)
    assert data["run"]["seeds"] == [0, 1] and data["classifier"] == {"epochs": 2}
    path.write_text("[oops]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config_file(path)
    path.write_text("not toml = = =")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.toml")


@given(
    st.text(max_size=40),
    st.sampled_from(["epochs", "lr", "edge_loss", "mode", "weights", "path", "unknown"]),
)
def test_fuzzed_set_values_either_parse_or_raise_config_error(raw, key):
    """Property: any --set string gives a valid config or a ConfigError, never a crash."""
    try:
        config = build_config(Options, {key: raw}, owner="fuzz")
    except ConfigError:
        return
    assert isinstance(config, Options)


@given(st.lists(st.text(max_size=30), max_size=4))
def test_fuzzed_set_pairs(pairs):
    try:
        parsed = parse_set_options(pairs)
    except ConfigError:
        return
    assert set(parsed) <= {"generator", "classifier", "benchmark"}
