"""Entry point ``builtin-generators``: the generators that ship with cgnbench."""

from __future__ import annotations

from robustbench_cgn import hookimpl

from .imagenet_cgn.generator import CGNImageNetGenerator
from .mnist.cgn_generator import CGNGenerator
from .mnist.dcgan_generator import DCGANBaselineGenerator
from .mnist.zoo import registered_weights
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
    from robustbench_cgn.explain.fid import INCEPTION_WEIGHTS

    from .imagenet_cgn.biggan import BIGGAN_WEIGHTS
    from .imagenet_cgn.u2net import U2NET_WEIGHTS
    from .imagenet_cgn.weights import CGN_IMAGENET_WEIGHTS
    from .shared.style_loss import VGG16_WEIGHTS

    for spec in (
        *registered_weights(),
        *CGN_IMAGENET_WEIGHTS.values(),
        *BIGGAN_WEIGHTS.values(),
        *U2NET_WEIGHTS.values(),
        *VGG16_WEIGHTS.values(),
        INCEPTION_WEIGHTS,
    ):
        registry.add(spec)
