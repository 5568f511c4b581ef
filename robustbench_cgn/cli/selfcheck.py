"""``cgnbench selfcheck``: is this device ready for runs? (A few seconds.)"""

from __future__ import annotations

import click
from rich.table import Table

from ..device import DEVICE_CHOICES, resolve_device
from ..errors import CGNBenchError
from ..selfcheck import device_summary, run_checks
from .app import App
from .group import cli

STYLE = {"ok": "green", "failed": "bold red", "skipped": "dim"}


@cli.command("selfcheck")
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="auto",
    show_default=True,
    help="auto: the GPU when there is one, else the CPU.",
)
@click.pass_obj
def selfcheck_command(app: App, device: str) -> None:
    """Check the compute device: versions and memory, fp32 against the CPU, pinned copies,
    channels_last, bf16/fp16 autocast, a mixed-precision training step and the OOM fallback.
    Exits non-zero when a check fails."""
    target = resolve_device(device)
    info = Table(show_header=False, box=None)
    for key, value in device_summary(target).items():
        info.add_row(key, value)
    app.console.print(info)
    table = Table(title=f"selfcheck on {target}", title_justify="left")
    for column in ("check", "result", "detail", "seconds"):
        table.add_column(column)
    results = run_checks(target)
    for result in results:
        style = STYLE[result.status]
        table.add_row(
            result.name, f"[{style}]{result.status}[/]", result.detail, f"{result.seconds:.2f}"
        )
    app.console.print(table)
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        raise CGNBenchError(f"{len(failed)} selfcheck(s) failed on {target}: {', '.join(failed)}")
    if target.type == "cpu" and device == "auto":
        app.console.print(
            "no CUDA device visible: checked the CPU (--device cuda on a GPU machine)"
        )
