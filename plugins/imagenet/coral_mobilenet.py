"""MobileNetV2 as a plain PyTorch module, built from a (dequantized) TFLite MobileNetV2 graph.

The Coral ``mobilenet_v2_1.0_224_quant.tflite`` was trained in TensorFlow, which pads
convolutions 'SAME': the output has ``ceil(size / stride)`` positions and the padding that
needs is split with the extra row/column at the bottom/right. For stride 1 and an odd kernel
that is PyTorch's symmetric ``padding=k // 2``, but for the stride-2 layers on even inputs
(224 -> 112 -> ...) TF pads 0 on top/left and 1 on bottom/right, where a PyTorch
``padding=1`` would pad both sides and shift every output by half a pixel. :class:`Conv2dSame`
does it exactly (and falls back to the built-in symmetric padding when that is equivalent).

Batch norm is already folded into the convolutions of the TFLite file, so every convolution
here has a bias and there are no normalisation layers: the state dict is exactly the
dequantized constants of the file, re-laid out (TFLite keeps convolutions as OHWI and depthwise
kernels as 1HWO; PyTorch wants OIHW and O1HW).

:func:`convert_mobilenet_v2` walks the operators of the graph and recognises the layers of a
MobileNetV2 (stem, inverted residuals with optional expansion, head, average pool, logits):
the architecture (widths, strides, residuals) is read from the graph, not assumed, and
anything that does not fit that pattern is an error rather than a silently different network.
The TFLite classifier has 1001 outputs, index 0 being TF-slim's "background" class; it is
dropped, so output ``i`` is ImageNet class ``i`` in sorted-WNID order (the order of ``timm``
and torchvision). Inference runs in float32 on the dequantized weights, not in the integer
arithmetic of the TFLite interpreter, so logits differ slightly from the quantized model's.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tflite_import import Operator, TFLiteGraph, TFLiteImportError, read_tflite

__all__ = [
    "CONVERTER_VERSION",
    "Conv2dSame",
    "ConvAct",
    "CoralMobileNetV2",
    "InvertedResidual",
    "build_mobilenet_v2",
    "convert_mobilenet_v2",
    "load_tflite_mobilenet_v2",
    "tf_same_padding",
]

# Bumped whenever the conversion (hence a cached converted state dict) changes.
CONVERTER_VERSION = 1


def tf_same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'SAME' padding ``(before, after)`` of one spatial dimension.

    The output has ``ceil(size / stride)`` positions; the padding that takes is split with the
    odd one out after (bottom/right), as ``tf.nn.conv2d`` and TFLite do.
    """
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` (with bias) padded exactly like TensorFlow's 'SAME' for any input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0,
            dilation=dilation,
            groups=groups,
            bias=True,
        )

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = tf_same_padding(
            x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0]
        )
        left, right = tf_same_padding(
            x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1]
        )
        if top == bottom and left == right:  # symmetric: let the convolution pad
            padding: tuple[int, int] = (top, left)
        else:
            x = F.pad(x, (left, right, top, bottom))
            padding = (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class ConvAct(nn.Sequential):
    """'SAME' convolution followed by ReLU6 (batch norm is folded into the convolution)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = Conv2dSame(in_ch, out_ch, kernel, stride=stride, groups=groups)
        self.act = nn.ReLU6(inplace=True)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand + ReLU6] -> 3x3 depthwise + ReLU6 -> 1x1 linear project,
    plus the input when the shape is unchanged (stride 1, same width)."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int, stride: int):
        super().__init__()
        self.expand = ConvAct(in_ch, hidden, 1) if hidden != in_ch else None
        self.depthwise = ConvAct(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = Conv2dSame(hidden, out_ch, 1)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return x + out if self.use_residual else out


class CoralMobileNetV2(nn.Module):
    """MobileNetV2 with folded batch norm and TF 'SAME' padding.

    ``arch`` is the plain-data description produced by :func:`convert_mobilenet_v2`:
    ``stem`` ``[out_channels, stride]``, ``blocks`` ``[[in, hidden, out, stride], ...]``,
    ``head`` (the last 1x1 conv's width) and ``num_classes``. Input: ``[B, 3, H, W]`` scaled
    to ``[-1, 1]`` (``x / 127.5 - 1`` on 0..255 pixels); output: logits ``[B, num_classes]``.
    """

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        self.arch = arch
        stem_out, stem_stride = arch["stem"]
        layers: list[nn.Module] = [ConvAct(3, stem_out, 3, stride=stem_stride)]
        layers += [InvertedResidual(*block) for block in arch["blocks"]]
        last = arch["blocks"][-1][2] if arch["blocks"] else stem_out
        layers.append(ConvAct(last, arch["head"], 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(arch["head"], arch["num_classes"])

    @property
    def last_conv(self) -> nn.Module:
        """The head's 1x1 conv + ReLU6 (7x7 at 224 input): the GradCAM target layer."""
        return self.features[-1]

    def embed(self, x: Tensor) -> Tensor:
        """The pooled penultimate features ``[B, head]``."""
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


# ---------------------------------------------------------------------------------------------
# conversion


def _conv_weight(graph: TFLiteGraph, op: Operator) -> tuple[Tensor, Tensor]:
    """The OIHW weight and bias of a CONV_2D (TFLite keeps the kernel as OHWI)."""
    weight = graph.constant(op.inputs[1]).permute(0, 3, 1, 2).contiguous()
    return weight, _bias(graph, op, weight.shape[0])


def _depthwise_weight(graph: TFLiteGraph, op: Operator) -> tuple[Tensor, Tensor]:
    """The ``[C, 1, kH, kW]`` weight and bias of a DEPTHWISE_CONV_2D (kept as 1HWC)."""
    weight = graph.constant(op.inputs[1]).permute(3, 0, 1, 2).contiguous()
    return weight, _bias(graph, op, weight.shape[0])


def _bias(graph: TFLiteGraph, op: Operator, channels: int) -> Tensor:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        return graph.constant(op.inputs[2]).float().contiguous()
    return torch.zeros(channels)


class _Walker:
    """Steps through the operators, checking each one continues the chain of activations."""

    def __init__(self, graph: TFLiteGraph, where: str):
        self.graph, self.where = graph, where
        self.ops = graph.operators
        self.pos = 0
        self.current = graph.inputs[0] if graph.inputs else -1

    def peek(self, ahead: int = 0) -> Operator | None:
        index = self.pos + ahead
        return self.ops[index] if index < len(self.ops) else None

    def fail(self, message: str) -> TFLiteImportError:
        op = self.peek()
        at = f"operator {op.index} ({op.type})" if op is not None else "the end of the graph"
        return TFLiteImportError(
            f"{self.where} is not a MobileNetV2 graph this converter understands: at {at}: "
            f"{message}"
        )

    def take(
        self,
        op_type: str,
        *,
        kernel: int | None = None,
        activation: str | None = None,
        depthwise: bool = False,
    ) -> Operator:
        op = self.peek()
        if op is None or op.type != op_type:
            raise self.fail(f"expected {op_type}")
        if op.inputs[0] != self.current:
            raise self.fail("its input is not the previous layer's output")
        options = op.options
        if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if (options.get("dilation_h", 1), options.get("dilation_w", 1)) != (1, 1):
                raise self.fail("dilated convolutions are not supported")
            if options.get("stride_h") != options.get("stride_w"):
                raise self.fail("unequal strides are not supported")
            if options.get("padding") != "SAME":
                raise self.fail(f"expected SAME padding, got {options.get('padding')}")
            if depthwise and options.get("depth_multiplier", 1) != 1:
                raise self.fail("depth_multiplier != 1 is not supported")
            shape = self.graph.tensors[op.inputs[1]].shape
            if kernel is not None and tuple(shape[1:3]) != (kernel, kernel):
                raise self.fail(f"expected a {kernel}x{kernel} kernel, got {shape[1:3]}")
        if activation is not None and options.get("fused_activation", "NONE") != activation:
            raise self.fail(
                f"expected fused activation {activation}, got {options.get('fused_activation')}"
            )
        self.pos += 1
        self.current = op.outputs[0]
        return op

    def is_next(self, *types: str) -> bool:
        return all((op := self.peek(i)) is not None and op.type == t for i, t in enumerate(types))


def convert_mobilenet_v2(
    graph: TFLiteGraph, *, drop_background: bool = True, where: str = "the TFLite model"
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(arch, state_dict)`` for :class:`CoralMobileNetV2` from a MobileNetV2 TFLite graph.

    With ``drop_background`` a 1001-way classifier loses its output 0 (TF-slim's background
    class), leaving the 1000 ImageNet classes in sorted-WNID order.
    """
    walk = _Walker(graph, where)
    state: dict[str, Tensor] = {}
    stem = walk.take("CONV_2D", kernel=3, activation="RELU6")
    state["features.0.conv.weight"], state["features.0.conv.bias"] = _conv_weight(graph, stem)
    channels = state["features.0.conv.weight"].shape[0]
    arch: dict[str, Any] = {"stem": [channels, stem.options["stride_h"]], "blocks": []}

    # inverted residuals: [CONV_2D 1x1 RELU6] DEPTHWISE_CONV_2D RELU6, CONV_2D 1x1 NONE, [ADD]
    while walk.is_next("DEPTHWISE_CONV_2D") or walk.is_next("CONV_2D", "DEPTHWISE_CONV_2D"):
        prefix = f"features.{len(arch['blocks']) + 1}"
        block_input = walk.current
        hidden = channels
        if walk.is_next("CONV_2D"):
            expand = walk.take("CONV_2D", kernel=1, activation="RELU6")
            w, b = _conv_weight(graph, expand)
            state[f"{prefix}.expand.conv.weight"], state[f"{prefix}.expand.conv.bias"] = w, b
            hidden = w.shape[0]
            if hidden == channels:
                raise walk.fail("an expansion layer that does not change the width")
        dw = walk.take("DEPTHWISE_CONV_2D", kernel=3, activation="RELU6", depthwise=True)
        w, b = _depthwise_weight(graph, dw)
        if w.shape[0] != hidden:
            raise walk.fail(f"depthwise conv over {w.shape[0]} channels, expected {hidden}")
        state[f"{prefix}.depthwise.conv.weight"], state[f"{prefix}.depthwise.conv.bias"] = w, b
        project = walk.take("CONV_2D", kernel=1, activation="NONE")
        w, b = _conv_weight(graph, project)
        state[f"{prefix}.project.weight"], state[f"{prefix}.project.bias"] = w, b
        out_channels, stride = w.shape[0], dw.options["stride_h"]
        residual = walk.is_next("ADD")
        if residual:
            add = walk.peek()
            assert add is not None
            if sorted(add.inputs) != sorted((block_input, walk.current)):
                raise walk.fail("a residual ADD that does not add the block's input and output")
            if add.options.get("fused_activation", "NONE") != "NONE":
                raise walk.fail("a residual ADD with a fused activation")
            walk.pos += 1
            walk.current = add.outputs[0]
        if residual != (stride == 1 and out_channels == channels):
            raise walk.fail("residual connection where MobileNetV2 has none, or the reverse")
        arch["blocks"].append([channels, hidden, out_channels, stride])
        channels = out_channels

    head_index = len(arch["blocks"]) + 1
    head = walk.take("CONV_2D", kernel=1, activation="RELU6")
    w, b = _conv_weight(graph, head)
    state[f"features.{head_index}.conv.weight"], state[f"features.{head_index}.conv.bias"] = w, b
    arch["head"] = w.shape[0]

    if walk.is_next("AVERAGE_POOL_2D"):
        pool = walk.peek()
        assert pool is not None
        size = graph.tensors[walk.current].shape[1:3]
        if (pool.options["filter_h"], pool.options["filter_w"]) != tuple(size) or pool.options[
            "fused_activation"
        ] != "NONE":
            raise walk.fail(f"an average pool that is not global over {tuple(size)}")
        walk.take("AVERAGE_POOL_2D")
    elif walk.is_next("MEAN"):
        walk.take("MEAN")
    else:
        raise walk.fail("expected the global average pool")

    if walk.is_next("CONV_2D"):
        logits = walk.take("CONV_2D", kernel=1, activation="NONE")
        weight, bias = _conv_weight(graph, logits)
        weight = weight[:, :, 0, 0]
    else:
        logits = walk.take("FULLY_CONNECTED", activation="NONE")
        weight = graph.constant(logits.inputs[1]).float()
        bias = _bias(graph, logits, weight.shape[0])
    if drop_background and weight.shape[0] == 1001:
        weight, bias = weight[1:], bias[1:]
    state["classifier.weight"], state["classifier.bias"] = weight.contiguous(), bias.contiguous()
    arch["num_classes"] = weight.shape[0]

    # what follows the logits only reshapes or normalises them: the module returns logits
    while (op := walk.peek()) is not None:
        if op.type not in ("RESHAPE", "SQUEEZE", "SOFTMAX", "DEQUANTIZE", "QUANTIZE"):
            raise walk.fail("expected only RESHAPE/SQUEEZE/SOFTMAX after the logits")
        walk.take(op.type)
    return arch, state


def build_mobilenet_v2(arch: dict[str, Any], state_dict: dict[str, Tensor]) -> CoralMobileNetV2:
    """The module for ``arch`` with ``state_dict`` loaded strictly, in eval mode."""
    model = CoralMobileNetV2(arch)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def load_tflite_mobilenet_v2(path: str | os.PathLike) -> CoralMobileNetV2:
    """Read, dequantize and convert a MobileNetV2 ``.tflite`` file into a float module."""
    arch, state = convert_mobilenet_v2(read_tflite(path), where=str(path))
    return build_mobilenet_v2(arch, state)
