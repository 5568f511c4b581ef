"""robustbench_cgn.commands: plugins declare commands without click; the CLI builds them."""

from __future__ import annotations

import types

import pytest
from click.testing import CliRunner
from rich.console import Console

from robustbench_cgn import hookimpl
from robustbench_cgn.cli.plugin_commands import CommandAdder, to_click
from robustbench_cgn.commands import (
    BadParameter,
    Choice,
    CommandSpec,
    IntRange,
    PathType,
    argument,
    comma_floats,
    command,
    option,
    pass_app,
    run_with_progress,
    speed_text,
)
from robustbench_cgn.errors import ConfigError
from robustbench_cgn.plugin_manager import load_plugins

SEEN: dict = {}


@command("greet")
@argument("files", nargs=-1, type=PathType(exists=True, dir_okay=False))
@option("--name", required=True, help="Who.")
@option("--times", type=IntRange(min=1), default=1, show_default=True)
@option("--tone", type=Choice(("warm", "dry")), default="warm")
@option("--weights", callback=comma_floats, default=None)
@option("--loud", is_flag=True)
@pass_app
def greet(app, files, name, times, tone, weights, loud):
    """Say hello FILES times."""
    if name == "nobody":
        raise BadParameter("must be somebody", param_hint="--name")
    SEEN.update(app=app, files=files, name=name, times=times, tone=tone, weights=weights, loud=loud)


def test_a_declared_command_is_a_click_command_with_the_same_options(tmp_path):
    assert isinstance(greet, CommandSpec) and greet.pass_app and greet.name == "greet"
    assert [p.decls[0] for p in greet.params] == [
        "files", "--name", "--times", "--tone", "--weights", "--loud"
    ]  # fmt: skip
    built = to_click(greet)
    file = tmp_path / "a.txt"
    file.write_text("x")
    runner = CliRunner()
    args = [str(file), "--name", "ann", "--times", "2", "--tone", "dry", "--weights", "1,2.5",
            "--loud"]  # fmt: skip
    result = runner.invoke(built, args, obj="the app")
    assert result.exit_code == 0, result.output
    assert {"app": "the app", "files": (str(file),), "name": "ann", "times": 2,
                    "tone": "dry", "weights": (1.0, 2.5), "loud": True} == SEEN  # fmt: skip
    assert "Say hello FILES times." in runner.invoke(built, ["--help"]).output
    for bad in (["--name", "x", "--times", "0"], ["--name", "x", "--tone", "hot"], ["nope.txt"]):
        assert runner.invoke(built, bad).exit_code == 2  # click's own checks of the types
    refused = runner.invoke(built, ["--name", "nobody"], obj="app")
    assert isinstance(refused.exception, BadParameter)
    assert str(refused.exception) == "--name: must be somebody"


def test_register_commands_takes_declared_and_click_commands():
    import click

    @click.command("legacy")
    def legacy():
        pass

    plugin = types.ModuleType("cmds")
    plugin.register_commands = hookimpl(
        lambda cli: (cli.add_command(greet), cli.add_command(legacy))
    )
    group = click.Group()
    load_plugins(autoload=False, builtins=False, extra_plugins=[("cmds", plugin)]).add_commands(
        CommandAdder(group)
    )
    assert sorted(group.commands) == ["greet", "legacy"]
    assert isinstance(group.commands["greet"], click.Command)


# ------------------------------------------------------------------ training command helpers


def test_comma_floats():
    assert comma_floats(None, None, None) is None
    assert comma_floats(None, None, "1,2.5, -3") == (1.0, 2.5, -3.0)
    option = types.SimpleNamespace(name="style_weights")
    with pytest.raises(ConfigError, match=r"^--style-weights: expected comma-separated numbers"):
        comma_floats(None, option, "1,x")


class FakeTrainer:
    def __init__(self, resumed_from, iteration):
        self.resumed_from, self.iteration, self.on_step = resumed_from, iteration, None

    def run(self, stop_after):
        for _ in range(stop_after):
            self.iteration += 1
            self.on_step(self.iteration, {"loss": 1.0 / self.iteration})
        return {"iteration": self.iteration, "seconds_per_iteration": 0.25}


def test_run_with_progress_announces_a_resume_and_passes_run_arguments(tmp_path):
    console = Console(file=open(tmp_path / "out.txt", "w"), width=120)  # noqa: SIM115
    seen = []
    trainer = FakeTrainer(tmp_path / "ckpt_00000004.pt", 4)
    summary = run_with_progress(
        trainer,
        console,
        "fake",
        total=10,
        status=lambda losses: seen.append(losses) or f"loss={losses['loss']:.2f}",
        stop_after=3,
    )
    console.file.close()
    assert summary["iteration"] == 7 and [s["loss"] for s in seen] == [1 / 5, 1 / 6, 1 / 7]
    assert "resuming from" in (tmp_path / "out.txt").read_text()
    assert speed_text(summary) == ", 0.250 s/iteration"
    assert speed_text({"seconds_per_iteration": None}) == ""
