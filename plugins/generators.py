"""Entry point ``builtin-generators``: the generators that ship with cgnbench."""

from __future__ import annotations

from robustbench_cgn import hookimpl

from .imagenet_cgn.generator import CGNImageNetGenerator
from .mnist.cgn_generator import CGNGenerator
from .mnist.dcgan_generator import DCGANBaselineGenerator
from .mnist.zoo import shipped_weights
from .original import OriginalGenerator
from .pretrained import PretrainedGenerator


@hookimpl
def register_generators(registry) -> None:
    registry.add(OriginalGenerator)
    registry.add(CGNGenerator)
    registry.add(DCGANBaselineGenerator)
    registry.add(PretrainedGenerator)
    registry.add(CGNImageNetGenerator)


@hookimpl
def register_tasks(registry) -> None:
    from .imagenet.tasks import IMAGENET_TASK
    from .mnist.tasks import TASKS

    for task in (*TASKS.values(), IMAGENET_TASK):
        registry.add(task)


@hookimpl
def register_commands(cli) -> None:
    from .imagenet.import_decisions import import_decisions_command
    from .imagenet_cgn.commands import (
        ablate_cgn_imagenet_command,
        generate_cgn_imagenet_command,
        train_cgn_imagenet_command,
    )
    from .mnist.ablation_command import ablate_cgn_command
    from .mnist.train_command import train_generator_command

    cli.add_command(train_generator_command)
    cli.add_command(ablate_cgn_command)
    cli.add_command(train_cgn_imagenet_command)
    cli.add_command(generate_cgn_imagenet_command)
    cli.add_command(import_decisions_command)
    cli.add_command(ablate_cgn_imagenet_command)


@hookimpl
def register_weights(registry) -> None:
    for spec in shipped_weights():
        registry.add(spec)
