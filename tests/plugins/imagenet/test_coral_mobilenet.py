"""The Coral TFLite MobileNetV2: reading the flatbuffer, TF 'SAME' padding, the conversion to a
PyTorch module and the ``mobilenet_v2-coral`` classifier, on the real file and real images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from imagenet_fixtures import make_context
from torchvision.io import ImageReadMode, decode_image

from robustbench_cgn.errors import CGNBenchError, ChecksumError, DataNotFoundError
from robustbench_cgn_plugins.imagenet import coral_classifier
from robustbench_cgn_plugins.imagenet.coral_classifier import (
    TFLITE_ENV,
    TFLITE_NAME,
    TFLITE_SHA256,
    MobileNetV2Coral,
)
from robustbench_cgn_plugins.imagenet.coral_mobilenet import (
    Conv2dSame,
    convert_mobilenet_v2,
    tf_same_padding,
)
from robustbench_cgn_plugins.imagenet.tasks import IMAGENET_TASK
from robustbench_cgn_plugins.imagenet.tflite_import import (
    QuantParams,
    dequantize,
    read_tflite,
)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tflite_path(shared_data) -> Path:
    return shared_data / "coral" / TFLITE_NAME


@pytest.fixture(scope="module")
def graph(tflite_path):
    return read_tflite(tflite_path)


# ---------------------------------------------------------------------------------------------
# reading the flatbuffer


def test_reads_the_real_graph(graph):
    types = graph.op_types()
    assert len(types) == 66
    # stem + 17 blocks (the first without expansion: 16 * 2 + 1 1x1 convs) + head + logits
    assert types.count("CONV_2D") == 1 + 16 * 2 + 1 + 1 + 1
    assert types.count("DEPTHWISE_CONV_2D") == 17
    assert types.count("ADD") == 10
    assert types[-3:] == ["CONV_2D", "RESHAPE", "SOFTMAX"]
    stem = graph.operators[0]
    assert stem.inputs[0] == graph.inputs[0]
    assert stem.options["padding"] == "SAME"
    assert (stem.options["stride_h"], stem.options["stride_w"]) == (2, 2)
    assert stem.options["fused_activation"] == "RELU6"
    depthwise = graph.operators[1]
    assert depthwise.type == "DEPTHWISE_CONV_2D" and depthwise.options["depth_multiplier"] == 1
    assert graph.tensors[graph.inputs[0]].shape == (1, 224, 224, 3)
    assert graph.tensors[graph.outputs[0]].shape == (1, 1001)
    # 53 convolutions with weights and bias, plus the RESHAPE's target shape
    assert len(graph.constants) == 53 * 2 + 1
    assert all(t.dtype == torch.float32 for i, t in graph.constants.items() if i != 1)


def test_dequantised_weights_match_a_hand_computation(graph, tflite_path):
    data = tflite_path.read_bytes()
    model = tflite.Model.GetRootAsModel(data, 0)
    subgraph = model.Subgraphs(0)
    stem = graph.operators[0]
    for index in stem.inputs[1:]:  # the uint8 kernel and the int32 bias
        tensor = subgraph.Tensors(index)
        raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
        dtype = {tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT32: "<i4"}[tensor.Type()]
        q = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy())
        quant = tensor.Quantization()
        expected = (q.astype(np.float64) - quant.ZeroPoint(0)) * quant.Scale(0)
        np.testing.assert_allclose(graph.constant(index).numpy(), expected, rtol=1e-6, atol=1e-9)
    # TFLite's own invariant: bias scale = input scale * weight scale
    x, w, b = (graph.tensors[i].quantization for i in stem.inputs)
    assert b.zero_point == (0,)
    assert b.scale[0] == pytest.approx(x.scale[0] * w.scale[0], rel=1e-5)
    kernel = graph.constant(stem.inputs[1])
    assert kernel.shape == (32, 3, 3, 3) and 0.1 < kernel.abs().max() < 100


def test_dequantize_per_tensor_and_per_channel():
    q = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    per_tensor = dequantize(q, QuantParams((0.5,), (10,)))
    torch.testing.assert_close(per_tensor, (torch.arange(24.0).view(2, 3, 4) - 10) * 0.5)
    per_channel = dequantize(q, QuantParams((1.0, 2.0, 4.0), (0, 1, 2), axis=1))
    scale = torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1)
    zero = torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1)
    torch.testing.assert_close(per_channel, (torch.arange(24.0).view(2, 3, 4) - zero) * scale)
    with pytest.raises(CGNBenchError, match="per-channel"):
        dequantize(q, QuantParams((1.0, 2.0), (0, 0), axis=1))
    # unquantized constants keep their kind
    assert dequantize(np.array([1, -1], dtype=np.int32), None).dtype == torch.int64


def _tiny_tflite(op: int, weights: np.ndarray, scales: list[float], axis: int) -> bytes:
    """A one-operator TFLite model (float input, int8 per-channel weights, no options)."""
    b = flatbuffers.Builder(1024)

    def ints(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    buffers = []
    data = b.CreateNumpyVector(weights.astype(np.int8).view(np.uint8).ravel())
    for payload in (None, data):
        tflite.BufferStart(b)
        if payload is not None:
            tflite.BufferAddData(b, payload)
        buffers.append(tflite.BufferEnd(b))
    scale_vec = b.CreateNumpyVector(np.asarray(scales, dtype=np.float32))
    zero_vec = b.CreateNumpyVector(np.zeros(len(scales), dtype=np.int64))
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, scale_vec)
    tflite.QuantizationParametersAddZeroPoint(b, zero_vec)
    tflite.QuantizationParametersAddQuantizedDimension(b, axis)
    quant = tflite.QuantizationParametersEnd(b)
    specs = [
        ("x", [1, 4, 4, 2], tflite.TensorType.FLOAT32, 0, None),
        ("w", list(weights.shape), tflite.TensorType.INT8, 1, quant),
        ("y", [1, 4, 4, weights.shape[0]], tflite.TensorType.FLOAT32, 0, None),
    ]
    tensors = []
    for name, shape, dtype, buffer, q in specs:
        name_off = b.CreateString(name)
        shape_off = ints(tflite.TensorStartShapeVector, shape)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_off)
        tflite.TensorAddType(b, dtype)
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name_off)
        if q is not None:
            tflite.TensorAddQuantization(b, q)
        tensors.append(tflite.TensorEnd(b))
    op_inputs = ints(tflite.OperatorStartInputsVector, [0, 1])
    op_outputs = ints(tflite.OperatorStartOutputsVector, [2])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, op_inputs)
    tflite.OperatorAddOutputs(b, op_outputs)
    operator = tflite.OperatorEnd(b)
    tflite.SubGraphStartTensorsVector(b, len(tensors))
    for t in reversed(tensors):
        b.PrependUOffsetTRelative(t)
    tensor_vec = b.EndVector()
    tflite.SubGraphStartOperatorsVector(b, 1)
    b.PrependUOffsetTRelative(operator)
    op_vec = b.EndVector()
    graph_inputs = ints(tflite.SubGraphStartInputsVector, [0])
    graph_outputs = ints(tflite.SubGraphStartOutputsVector, [2])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddInputs(b, graph_inputs)
    tflite.SubGraphAddOutputs(b, graph_outputs)
    tflite.SubGraphAddOperators(b, op_vec)
    subgraph = tflite.SubGraphEnd(b)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, op)
    tflite.OperatorCodeAddBuiltinCode(b, op)
    tflite.OperatorCodeAddVersion(b, 1)
    code = tflite.OperatorCodeEnd(b)
    vectors = []
    for start, items in (
        (tflite.ModelStartOperatorCodesVector, [code]),
        (tflite.ModelStartSubgraphsVector, [subgraph]),
        (tflite.ModelStartBuffersVector, buffers),
    ):
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        vectors.append(b.EndVector())
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, vectors[0])
    tflite.ModelAddSubgraphs(b, vectors[1])
    tflite.ModelAddBuffers(b, vectors[2])
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_per_channel_int8_weights_of_a_built_model():
    weights = np.array([[-3, 5], [7, -128], [127, 0]], dtype=np.int8).reshape(3, 1, 1, 2)
    scales = [0.5, 0.25, 2.0]
    graph = read_tflite(_tiny_tflite(tflite.BuiltinOperator.CONV_2D, weights, scales, axis=0))
    assert graph.op_types() == ["CONV_2D"] and graph.operators[0].inputs == (0, 1)
    expected = torch.tensor(weights, dtype=torch.float32) * torch.tensor(scales).view(3, 1, 1, 1)
    torch.testing.assert_close(graph.constant(1), expected)
    assert graph.tensors[1].quantization.per_channel
    with pytest.raises(CGNBenchError, match="not a constant"):
        graph.constant(0)


def test_unknown_operator_is_a_clear_error():
    weights = np.ones((3, 1, 1, 2), dtype=np.int8)
    model = _tiny_tflite(tflite.BuiltinOperator.TANH, weights, [1.0, 1.0, 1.0], axis=0)
    with pytest.raises(CGNBenchError, match=r"operator 0 is TANH, which the converter does not"):
        read_tflite(model)


def test_files_that_are_not_tflite_models(tmp_path, tflite_path):
    text = tmp_path / "model.tflite"
    text.write_text("this is not a flatbuffer\n" * 10)
    with pytest.raises(CGNBenchError, match="is not a TensorFlow Lite model"):
        read_tflite(text)
    with pytest.raises(CGNBenchError, match="cannot read"):
        read_tflite(tmp_path / "missing.tflite")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tflite_path.read_bytes()[:4096])
    with pytest.raises(CGNBenchError, match="damaged TFLite model"):
        read_tflite(truncated)


def test_other_architectures_are_refused(shared_data):
    # the tiny MobileNetV1 of the same release: no linear projection after the depthwise conv
    v1 = read_tflite(shared_data / "coral" / "mobilenet_v1_0.25_128_quant.tflite")
    with pytest.raises(CGNBenchError, match="not a MobileNetV2 graph"):
        convert_mobilenet_v2(v1)


# ---------------------------------------------------------------------------------------------
# TensorFlow 'SAME' padding


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (224, 3, 2, (0, 1)),  # even input, stride 2: the extra row goes to the bottom
        (225, 3, 2, (1, 1)),
        (8, 3, 2, (0, 1)),
        (7, 3, 2, (1, 1)),
        (5, 3, 2, (1, 1)),
        (7, 3, 1, (1, 1)),
        (8, 3, 1, (1, 1)),
        (5, 4, 1, (1, 2)),  # even kernel: extra after
        (6, 1, 2, (0, 0)),
        (2, 5, 3, (1, 2)),  # one output: the 5-wide window needs 3, 1 before and 2 after
    ],
)
def test_tf_same_padding_table(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


def _reference_same_conv(x, weight, bias, stride, groups):
    """TF 'SAME' by definition: ``ceil(n / s)`` outputs, output ``i`` reads the window that
    starts at ``i * s - pad_before`` with ``pad_before = total // 2``, zeros outside."""
    _, _, h, w = x.shape
    k = weight.shape[-1]
    out_h, out_w = -(-h // stride), -(-w // stride)
    top = max((out_h - 1) * stride + k - h, 0) // 2
    left = max((out_w - 1) * stride + k - w, 0) // 2
    padded = torch.zeros(x.shape[0], x.shape[1], h + 2 * k, w + 2 * k, dtype=x.dtype)
    padded[:, :, k : k + h, k : k + w] = x
    out = torch.empty(x.shape[0], weight.shape[0], out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            r, c = k + i * stride - top, k + j * stride - left
            window = padded[:, :, r : r + k, c : c + k]
            out[:, :, i, j] = F.conv2d(window, weight, bias, groups=groups)[:, :, 0, 0]
    return out


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv2d_same_matches_the_definition(size, stride, depthwise):
    torch.manual_seed(size * 10 + stride)
    channels = 4
    conv = Conv2dSame(channels, channels, 3, stride=stride, groups=channels if depthwise else 1)
    x = torch.randn(2, channels, size, size + 1).double()  # odd and even at once
    conv = conv.double()
    out = conv(x)
    assert out.shape[-2:] == (-(-size // stride), -(-(size + 1) // stride))
    expected = _reference_same_conv(x, conv.weight, conv.bias, stride, conv.groups)
    torch.testing.assert_close(out, expected)
    if stride == 1:  # PyTorch's own 'same' agrees where it is defined
        torch.testing.assert_close(
            out, F.conv2d(x, conv.weight, conv.bias, padding="same", groups=conv.groups)
        )


# ---------------------------------------------------------------------------------------------
# the conversion and the classifier


def test_converted_layout(graph):
    arch, state = convert_mobilenet_v2(graph)
    assert arch["stem"] == [32, 2] and arch["head"] == 1280 and arch["num_classes"] == 1000
    assert len(arch["blocks"]) == 17 and arch["blocks"][0] == [32, 32, 16, 1]
    assert [b[3] for b in arch["blocks"]].count(2) == 4
    ops = graph.operators
    # OHWI -> OIHW, 1HWC -> C1HW, background row dropped from the 1001-way logits
    torch.testing.assert_close(
        state["features.0.conv.weight"], graph.constant(ops[0].inputs[1]).permute(0, 3, 1, 2)
    )
    depthwise = graph.constant(ops[1].inputs[1])
    torch.testing.assert_close(
        state["features.1.depthwise.conv.weight"], depthwise[0].permute(2, 0, 1)[:, None]
    )
    logits = ops[-3]
    torch.testing.assert_close(
        state["classifier.weight"], graph.constant(logits.inputs[1])[1:, 0, 0, :]
    )
    torch.testing.assert_close(state["classifier.bias"], graph.constant(logits.inputs[2])[1:])


def test_weights_resolution_and_identity(
    tmp_path, monkeypatch, tflite_path, shared_data, downloads_allowed
):
    monkeypatch.delenv(TFLITE_ENV, raising=False)
    classifier = MobileNetV2Coral()
    # the shared data folder
    ctx = make_context(tmp_path, shared_data)
    assert coral_classifier.resolve_tflite("auto", ctx) == tflite_path
    assert classifier.identity(IMAGENET_TASK, ctx) == {"weights_sha256": TFLITE_SHA256}
    # the environment variable wins; other weights are another identity
    other = tmp_path / "other.tflite"
    other.write_bytes(tflite_path.read_bytes() + b"\0")
    monkeypatch.setenv(TFLITE_ENV, str(other))
    assert coral_classifier.resolve_tflite("auto", ctx) == other
    assert classifier.identity(IMAGENET_TASK, ctx)["weights_sha256"] != TFLITE_SHA256
    monkeypatch.setenv(TFLITE_ENV, str(tmp_path / "nope.tflite"))
    with pytest.raises(DataNotFoundError, match=TFLITE_ENV):
        coral_classifier.resolve_tflite("auto", ctx)
    monkeypatch.delenv(TFLITE_ENV)
    # an explicit path
    explicit = MobileNetV2Coral(MobileNetV2Coral.Config(weights=str(tflite_path)))
    assert explicit.identity(IMAGENET_TASK, ctx) == {"weights_sha256": TFLITE_SHA256}
    with pytest.raises(DataNotFoundError, match="is not a file"):
        coral_classifier.resolve_tflite(str(tmp_path / "missing.tflite"), ctx)
    # a data-dir copy must be the release file
    fake_data = tmp_path / "data"
    (fake_data / "coral").mkdir(parents=True)
    (fake_data / "coral" / TFLITE_NAME).write_bytes(other.read_bytes())
    with pytest.raises(ChecksumError, match="mobilenet_v2.coral copy under --data-dir"):
        coral_classifier.resolve_tflite("auto", make_context(tmp_path, fake_data))
    # nothing local: identity is the pinned release hash without downloading; the download
    # goes to <cache>/weights/mobilenet_v2.coral and is checked (here from a file:// mirror)
    offline = make_context(tmp_path, None)
    assert classifier.identity(IMAGENET_TASK, offline) == {"weights_sha256": TFLITE_SHA256}
    spec = coral_classifier.CORAL_WEIGHTS
    missing = dataclasses.replace(spec, urls=(tmp_path.joinpath("x").as_uri(),))
    monkeypatch.setattr(coral_classifier, "CORAL_WEIGHTS", missing)
    with pytest.raises(DataNotFoundError, match=f"could not download {TFLITE_NAME}"):
        coral_classifier.resolve_tflite("auto", offline)
    monkeypatch.setattr(
        coral_classifier, "CORAL_WEIGHTS", dataclasses.replace(spec, urls=(tflite_path.as_uri(),))
    )
    fetched = coral_classifier.resolve_tflite("auto", offline)
    expected = tmp_path / "cache" / "weights" / "mobilenet_v2.coral" / TFLITE_NAME
    assert fetched == expected and fetched.is_file()


def _load_subset(folder: Path, size: int, resize_to: int, step: int = 10):
    """Every ``step``-th sample image (sorted by file name) as ``[0, 1]`` floats, its label
    being the index of its WNID among the sorted WNIDs."""
    files = sorted(folder.glob("n*_*.jpg"))
    wnids = sorted({f.name.split("_", 1)[0] for f in files})
    assert len(files) == len(wnids) == 1000
    images, labels = [], []
    for f in files[::step]:
        image = decode_image(str(f), mode=ImageReadMode.RGB)
        image = TF.resize(image, resize_to, antialias=True)  # bilinear
        images.append(TF.center_crop(image, size).float() / 255)
        labels.append(wnids.index(f.name.split("_", 1)[0]))
    return torch.stack(images), torch.tensor(labels)


def test_classifier_top1_on_real_imagenet_images(tmp_path, monkeypatch, shared_data):
    monkeypatch.delenv(TFLITE_ENV, raising=False)
    wnids = [line.split()[0] for line in (shared_data / "class_maps/categories.txt").open()]
    assert wnids == sorted(wnids)  # the class order the logits are scored against
    classifier = MobileNetV2Coral(MobileNetV2Coral.Config(channels_last=True))
    config = classifier.input_config()
    assert (config.size, config.resize_to, config.interpolation) == (224, 256, "bilinear")
    ctx = make_context(tmp_path, shared_data)
    classifier.build(IMAGENET_TASK, ctx)
    cached = list((tmp_path / "cache" / "converted").glob("*.pt"))
    assert [p.name for p in cached] == [f"{TFLITE_SHA256[:16]}.pt"]
    assert not classifier.model.training

    images, labels = _load_subset(shared_data / "imagenet_samples_256q90", 224, 256)
    prepared = classifier.prepare(images)
    torch.testing.assert_close(prepared, images * 2 - 1)  # x / 127.5 - 1
    assert prepared.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits = torch.cat([classifier.predict(b)[""] for b in prepared.split(50)])
    assert logits.shape == (100, 1000)
    top1 = (logits.argmax(1) == labels).float().mean().item()
    assert top1 >= 0.80, f"top-1 {top1:.2%} on 100 real ImageNet images"

    # a second build loads the cached conversion: the same weights, the same predictions
    # (up to float rounding: contiguous rather than channels_last, another batch size)
    again = MobileNetV2Coral()
    again.build(IMAGENET_TASK, ctx)
    first = classifier.model.state_dict()
    for key, value in again.model.state_dict().items():
        assert torch.equal(value, first[key]), key
    with torch.inference_mode():
        predicted = again.predict(again.prepare(images[:4]))[""]
    torch.testing.assert_close(predicted, logits[:4], rtol=1e-4, atol=1e-4)
    assert again.embed(images[:2] * 2 - 1).shape == (2, 1280)
    model, layer = again.gradcam_target()
    assert model is again.model and layer is again.model.features[-1]


def test_registered_as_a_builtin():
    from robustbench_cgn.plugin_manager import load_plugins

    entry = load_plugins().registries.classifiers.get("mobilenet_v2-coral")
    assert entry.cls is MobileNetV2Coral and entry.cls.supports(IMAGENET_TASK)
    assert entry.defaults() == {"weights": "auto", "channels_last": True}
