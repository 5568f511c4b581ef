"""Read a TensorFlow Lite flatbuffer into plain Python data, weights dequantized to float32.

The only pretrained ImageNet classifier available offline here is a uint8-quantized TFLite
model (the Coral MobileNetV2). Rather than running it through a TFLite interpreter (a heavy,
platform-specific dependency that computes in integers), we read the flatbuffer with the
pure-Python ``tflite`` package (generated from TFLite's ``schema.fbs``) and hand back what a
converter to an ordinary PyTorch module needs:

* :class:`TFLiteGraph`: the tensors (name, shape, type, quantization), the operators of the
  first subgraph in execution order (type, input/output tensor indices, decoded options such as
  strides, padding, ``depth_multiplier`` and the fused activation) and the graph's inputs and
  outputs;
* ``graph.constants``: every tensor that holds data in the file, as a torch tensor. Quantized
  ones are dequantized to float32 as ``(q - zero_point) * scale``, per tensor or per channel
  along ``quantized_dimension``; unquantized integer constants (e.g. a RESHAPE's target shape)
  stay integers, float constants stay floats.

Only operators whose options this module knows are accepted (:data:`SUPPORTED_OPS`): anything
else raises :class:`~robustbench_cgn.errors.CGNBenchError` naming the operator, so a converter
never silently ignores a layer it does not understand. So does a file that is not a TFLite
model or is damaged.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_cgn.errors import CGNBenchError

__all__ = [
    "SUPPORTED_OPS",
    "Operator",
    "QuantParams",
    "TFLiteGraph",
    "TFLiteImportError",
    "TensorInfo",
    "dequantize",
    "read_tflite",
]

FILE_IDENTIFIER = b"TFL3"


class TFLiteImportError(CGNBenchError):
    """A file that is not a (supported) TFLite model."""


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization ``real = (q - zero_point) * scale``.

    One ``scale``/``zero_point`` per tensor, or one per slice along ``axis`` (per-channel).
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True)
class TensorInfo:
    """A tensor of the graph: ``dtype`` is the TFLite type name (``"UINT8"``, ``"INT32"``...)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: QuantParams | None = None
    is_constant: bool = False


@dataclass(frozen=True)
class Operator:
    """One operator: ``type`` is the TFLite builtin name (``"CONV_2D"``...).

    ``inputs``/``outputs`` are tensor indices (``-1`` marks an omitted optional input, e.g. a
    convolution without bias). ``options`` holds the decoded builtin options with snake_case
    keys: ``padding`` (``"SAME"``/``"VALID"``), ``stride_h``, ``stride_w``, ``dilation_h``,
    ``dilation_w``, ``depth_multiplier``, ``filter_h``, ``filter_w``, ``fused_activation``
    (``"NONE"``, ``"RELU"``, ``"RELU6"``...), ``new_shape``, ``beta``... as the type has them.
    """

    index: int
    type: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    """The first subgraph of a TFLite model as plain data (see the module docstring)."""

    version: int
    description: str
    tensors: list[TensorInfo]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    constants: dict[int, torch.Tensor]

    def constant(self, index: int) -> torch.Tensor:
        """The (dequantized) data of tensor ``index``; a clear error if it has none."""
        if index not in self.constants:
            name = self.tensors[index].name if 0 <= index < len(self.tensors) else "?"
            raise TFLiteImportError(f"tensor {index} ({name!r}) is not a constant of the graph")
        return self.constants[index]

    def op_types(self) -> list[str]:
        return [op.type for op in self.operators]


# ---------------------------------------------------------------------------------------------
# operator options


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _activation(opts: Any) -> str:
    return _schema().activations.get(opts.FusedActivationFunction(), "UNKNOWN")


def _conv_options(opts: Any) -> dict[str, Any]:
    return {
        "padding": _schema().paddings.get(opts.Padding(), "UNKNOWN"),
        "stride_h": opts.StrideH(),
        "stride_w": opts.StrideW(),
        "dilation_h": opts.DilationHFactor(),
        "dilation_w": opts.DilationWFactor(),
        "fused_activation": _activation(opts),
    }


def _depthwise_options(opts: Any) -> dict[str, Any]:
    return {**_conv_options(opts), "depth_multiplier": opts.DepthMultiplier()}


def _pool_options(opts: Any) -> dict[str, Any]:
    return {
        "padding": _schema().paddings.get(opts.Padding(), "UNKNOWN"),
        "stride_h": opts.StrideH(),
        "stride_w": opts.StrideW(),
        "filter_h": opts.FilterHeight(),
        "filter_w": opts.FilterWidth(),
        "fused_activation": _activation(opts),
    }


def _reshape_options(opts: Any) -> dict[str, Any]:
    shape = [int(opts.NewShape(i)) for i in range(opts.NewShapeLength())]
    return {"new_shape": tuple(shape)} if shape else {}


def _squeeze_options(opts: Any) -> dict[str, Any]:
    return {
        "squeeze_dims": tuple(int(opts.SqueezeDims(i)) for i in range(opts.SqueezeDimsLength()))
    }


def _activation_only(opts: Any) -> dict[str, Any]:
    return {"fused_activation": _activation(opts)}


def _no_options(opts: Any) -> dict[str, Any]:
    return {}


SUPPORTED_OPS: tuple[str, ...] = (
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "DEQUANTIZE",
    "FULLY_CONNECTED",
    "LOGISTIC",
    "MAX_POOL_2D",
    "MEAN",
    "PAD",
    "QUANTIZE",
    "RELU",
    "RELU6",
    "RESHAPE",
    "SOFTMAX",
    "SQUEEZE",
)


@dataclass(frozen=True)
class _Schema:
    """The ``tflite`` package's generated classes and enum names, imported on first use (the
    package is ~200 modules: plugin discovery should not pay for it)."""

    tflite: Any
    paddings: dict[int, str]
    activations: dict[int, str]
    tensor_types: dict[int, str]
    op_names: dict[int, str]
    options: dict[str, tuple[Any, Callable[[Any], dict[str, Any]]]]


@functools.cache
def _schema() -> _Schema:
    try:
        import tflite
    except ImportError:  # pragma: no cover - a declared dependency
        raise TFLiteImportError(
            "reading .tflite files needs the `tflite` package: pip install tflite"
        ) from None
    options: dict[str, tuple[Any, Callable[[Any], dict[str, Any]]]] = {
        "CONV_2D": (tflite.Conv2DOptions, _conv_options),
        "DEPTHWISE_CONV_2D": (tflite.DepthwiseConv2DOptions, _depthwise_options),
        "AVERAGE_POOL_2D": (tflite.Pool2DOptions, _pool_options),
        "MAX_POOL_2D": (tflite.Pool2DOptions, _pool_options),
        "ADD": (tflite.AddOptions, _activation_only),
        "FULLY_CONNECTED": (
            tflite.FullyConnectedOptions,
            lambda o: {"fused_activation": _activation(o), "keep_num_dims": o.KeepNumDims()},
        ),
        "CONCATENATION": (
            tflite.ConcatenationOptions,
            lambda o: {"axis": o.Axis(), "fused_activation": _activation(o)},
        ),
        "RESHAPE": (tflite.ReshapeOptions, _reshape_options),
        "SQUEEZE": (tflite.SqueezeOptions, _squeeze_options),
        "MEAN": (tflite.ReducerOptions, lambda o: {"keep_dims": bool(o.KeepDims())}),
        "SOFTMAX": (tflite.SoftmaxOptions, lambda o: {"beta": float(o.Beta())}),
    }
    for name in SUPPORTED_OPS:  # the rest have no options the converter needs
        options.setdefault(name, (None, _no_options))
    assert set(options) == set(SUPPORTED_OPS)
    return _Schema(
        tflite=tflite,
        paddings=_enum_names(tflite.Padding),
        activations=_enum_names(tflite.ActivationFunctionType),
        tensor_types=_enum_names(tflite.TensorType),
        op_names=_enum_names(tflite.BuiltinOperator),
        options=options,
    )


_NUMPY_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


# ---------------------------------------------------------------------------------------------
# reading


def read_tflite(source: str | os.PathLike | bytes) -> TFLiteGraph:
    """Parse a ``.tflite`` file (a path or its bytes) into a :class:`TFLiteGraph`.

    Raises :class:`TFLiteImportError` (a :class:`CGNBenchError`) for a file that is not a TFLite
    flatbuffer, a damaged one, a model with several subgraphs, sparse or unsupported tensor types
    or an operator outside :data:`SUPPORTED_OPS`.
    """
    schema = _schema()
    if isinstance(source, bytes | bytearray):
        data, where = bytes(source), "<bytes>"
    else:
        where = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise TFLiteImportError(f"cannot read TFLite model {where}: {e}") from None
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise TFLiteImportError(
            f"{where} is not a TensorFlow Lite model (no {FILE_IDENTIFIER.decode()} "
            "flatbuffer identifier)"
        )
    try:
        return _parse(schema, data, where)
    except TFLiteImportError:
        raise
    except Exception as e:  # flatbuffers reports damage as struct/index errors
        raise TFLiteImportError(
            f"{where} is a damaged TFLite model ({type(e).__name__}: {e})"
        ) from None


def _parse(schema: _Schema, data: bytes, where: str) -> TFLiteGraph:
    model = schema.tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise TFLiteImportError(
            f"{where} has {model.SubgraphsLength()} subgraphs; only single-graph models are "
            "supported"
        )
    graph = model.Subgraphs(0)
    op_codes = [
        _op_name(schema, model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())
    ]

    tensors: list[TensorInfo] = []
    constants: dict[int, torch.Tensor] = {}
    for index in range(graph.TensorsLength()):
        tensor = graph.Tensors(index)
        info, raw = _tensor(schema, model, data, tensor, index, where)
        tensors.append(info)
        if raw is not None:
            constants[index] = dequantize(raw, info.quantization)

    operators = []
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        op_type = op_codes[op.OpcodeIndex()]
        if op_type not in schema.options:
            raise TFLiteImportError(
                f"{where}: operator {index} is {op_type}, which the converter does not know "
                f"(supported: {', '.join(SUPPORTED_OPS)})"
            )
        options_cls, decode = schema.options[op_type]
        options: dict[str, Any] = {}
        table = op.BuiltinOptions()
        if options_cls is not None and table is not None:
            opts = options_cls()
            opts.Init(table.Bytes, table.Pos)
            options = decode(opts)
        operators.append(
            Operator(
                index=index,
                type=op_type,
                inputs=tuple(int(op.Inputs(i)) for i in range(op.InputsLength())),
                outputs=tuple(int(op.Outputs(i)) for i in range(op.OutputsLength())),
                options=options,
            )
        )
    description = model.Description()
    return TFLiteGraph(
        version=int(model.Version()),
        description=description.decode("utf-8", "replace") if description else "",
        tensors=tensors,
        operators=operators,
        inputs=tuple(int(graph.Inputs(i)) for i in range(graph.InputsLength())),
        outputs=tuple(int(graph.Outputs(i)) for i in range(graph.OutputsLength())),
        constants=constants,
    )


def _op_name(schema: _Schema, code: Any) -> str:
    # Schema v3a moved builtin codes > 127 to ``builtin_code``; older files only set the
    # deprecated int8 field. TFLite itself takes the larger of the two.
    value = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    name = schema.op_names.get(value, f"BUILTIN_{value}")
    if name == "CUSTOM":
        custom = code.CustomCode()
        name = f"CUSTOM({custom.decode('utf-8', 'replace') if custom else '?'})"
    return name


def _tensor(
    schema: _Schema, model: Any, data: bytes, tensor: Any, index: int, where: str
) -> tuple[TensorInfo, np.ndarray | None]:
    name = (tensor.Name() or b"").decode("utf-8", "replace")
    shape = tuple(int(tensor.Shape(i)) for i in range(tensor.ShapeLength()))
    dtype = schema.tensor_types.get(tensor.Type(), f"TYPE_{tensor.Type()}")
    quant = _quantization(tensor.Quantization())
    raw = None
    buffer_index = tensor.Buffer()
    if buffer_index > 0:  # buffer 0 is the empty sentinel of non-constant tensors
        raw_bytes = _buffer_bytes(model.Buffers(buffer_index), data)
        if raw_bytes:
            if tensor.Sparsity() is not None:
                raise TFLiteImportError(f"{where}: tensor {name!r} is sparse (not supported)")
            if dtype not in _NUMPY_TYPES:
                raise TFLiteImportError(
                    f"{where}: constant tensor {name!r} has type {dtype} (not supported)"
                )
            raw = np.frombuffer(raw_bytes, dtype=np.dtype(_NUMPY_TYPES[dtype]).newbyteorder("<"))
            expected = int(np.prod(shape)) if shape else 1
            if raw.size != expected:
                raise TFLiteImportError(
                    f"{where}: tensor {name!r} holds {raw.size} values for shape {shape}"
                )
            raw = raw.reshape(shape)
    info = TensorInfo(index, name, shape, dtype, quant, is_constant=raw is not None)
    return info, raw


def _buffer_bytes(buffer: Any, data: bytes) -> bytes:
    # Models over 2 GB keep buffer data after the flatbuffer, addressed by offset/size
    # (offset 1 is the "no data" marker).
    offset = int(buffer.Offset())
    if offset > 1:
        return data[offset : offset + int(buffer.Size())]
    if buffer.DataLength() == 0:
        return b""
    return buffer.DataAsNumpy().tobytes()


def _quantization(params: Any) -> QuantParams | None:
    if params is None or params.ScaleLength() == 0:
        return None
    scale = tuple(float(params.Scale(i)) for i in range(params.ScaleLength()))
    zero_point = tuple(int(params.ZeroPoint(i)) for i in range(params.ZeroPointLength()))
    if not zero_point:
        zero_point = (0,) * len(scale)
    return QuantParams(scale, zero_point, int(params.QuantizedDimension()))


def dequantize(values: np.ndarray, quant: QuantParams | None) -> torch.Tensor:
    """``(q - zero_point) * scale`` as float32, per tensor or per channel along ``quant.axis``.

    Unquantized data is returned as is (floats as float32, integers as int64): the shapes,
    axes and paddings that some operators take as constant inputs.
    """
    if quant is None:
        if np.issubdtype(values.dtype, np.floating):
            return torch.from_numpy(values.astype(np.float32))
        return torch.from_numpy(values.astype(np.int64))
    q = values.astype(np.float64)
    scale = np.asarray(quant.scale, dtype=np.float64)
    zero_point = np.asarray(quant.zero_point, dtype=np.float64)
    channels = max(len(scale), len(zero_point))
    if channels > 1:
        axis = quant.axis
        if not 0 <= axis < q.ndim or q.shape[axis] != channels:
            raise TFLiteImportError(
                f"per-channel quantization with {channels} scales along axis {axis} does not "
                f"fit a tensor of shape {tuple(q.shape)}"
            )
        view = [1] * q.ndim
        view[axis] = channels
        scale = np.broadcast_to(scale, (channels,)).reshape(view)
        zero_point = np.broadcast_to(zero_point, (channels,)).reshape(view)
    return torch.from_numpy(((q - zero_point) * scale).astype(np.float32))
