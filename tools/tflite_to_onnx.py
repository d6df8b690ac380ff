"""Convert a float TFLite model (NHWC) into an ONNX graph (NCHW) with the ``onnx`` helper API.

Why our own converter: tf2onnx and tflite2onnx stop at MediaPipe's custom op ``Convolution2DTransposeBias``, and
the few op types the selfie segmentation model uses are easy to map one by one. The converter reads the flatbuffer
with the TFLite schema module that ships in the ``mediapipe`` wheel (``schema_py_generated.py``), so it needs no
TensorFlow. It works in two steps that can be tested apart: ``parse_tflite`` turns the flatbuffer into a small,
plain graph (``TflGraph``); ``graph_to_onnx`` maps that graph to ONNX and refuses any op it does not know with
an error naming the op, its position and the supported set.

Layout: the ONNX graph runs in NCHW throughout. Weights are transposed at conversion time and FLOAT16 constants
behind DEQUANTIZE ops are folded to float32, so the ONNX file needs no runtime layout or dtype conversions. The
batch dimension becomes symbolic (``N``) when every op allows it.

Usage: ``python -m tools.tflite_to_onnx MODEL.tflite --schema schema_py_generated.py -o model.onnx``
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18  # Resize with `axes` (keeps the batch dimension symbolic)
IR_VERSION = 8  # readable by every onnxruntime since 1.10
PRODUCER = "segscale-tflite-to-onnx"
PRODUCER_VERSION = "1"

_TFL_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
# TFLite Padding enum (schema) and TfLitePadding enum (C API, used by custom ops' raw option structs)
_SAME, _VALID = "SAME", "VALID"
_SCHEMA_PADDING = {0: _SAME, 1: _VALID}
_C_PADDING = {1: _SAME, 2: _VALID}
_FUSED = {0: None, 1: "RELU", 3: "RELU6"}


class ConversionError(ValueError):
    """The TFLite model uses something this converter does not map; the message says what and where."""


@dataclass(frozen=True)
class TflTensor:
    name: str
    shape: tuple[int, ...]
    dtype: Any  # numpy dtype class
    data: np.ndarray | None = None  # constant data, if the tensor has a non-empty buffer


@dataclass(frozen=True)
class TflOp:
    code: str  # builtin operator name (e.g. "CONV_2D") or the custom code of a CUSTOM op
    inputs: tuple[int, ...]  # tensor indices; -1 = optional input left out
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    custom_options: bytes = b""


@dataclass(frozen=True)
class TflGraph:
    tensors: tuple[TflTensor, ...]
    ops: tuple[TflOp, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""


def load_schema(path: Path) -> ModuleType:
    """Import the TFLite flatbuffer schema module (``schema_py_generated.py``) from a file."""
    spec = importlib.util.spec_from_file_location("tflite_schema_py_generated", path)
    if spec is None or spec.loader is None:
        raise ConversionError(f"cannot import the TFLite schema module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _read_options(schema: ModuleType, op: Any, option_names: dict[int, str]) -> dict[str, Any]:
    """Every scalar field of an op's builtin options table, by its schema name (e.g. ``StrideH``)."""
    opt_type = op.BuiltinOptionsType()
    if opt_type == 0:
        return {}
    table = op.BuiltinOptions()
    opts = getattr(schema, option_names[opt_type])()
    opts.Init(table.Bytes, table.Pos)
    values = {}
    for attr in dir(opts):
        skip = attr.startswith(("GetRoot", "Init")) or attr.endswith(("Numpy", "Length", "IsNone"))
        if skip or not attr[:1].isupper():
            continue
        try:
            values[attr] = getattr(opts, attr)()
        except TypeError:  # vector accessors need an index: none of the supported ops has one
            continue
    return values


def parse_tflite(data: bytes, schema: ModuleType) -> TflGraph:
    """Read subgraph 0 of a TFLite flatbuffer into a ``TflGraph``."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ConversionError("not a TFLite flatbuffer (file identifier 'TFL3' missing)")
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() != 1:
        raise ConversionError(f"expected 1 subgraph, found {model.SubgraphsLength()}")
    op_names = _enum_names(schema.BuiltinOperator)
    option_names = _enum_names(schema.BuiltinOptions)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        builtin = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        codes.append(oc.CustomCode().decode() if name == "CUSTOM" else name)
    sub = model.Subgraphs(0)
    tensors = []
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        if t.Type() not in _TFL_DTYPES:
            raise ConversionError(f"tensor {i} {t.Name().decode()!r}: unsupported TFLite tensor type {t.Type()}")
        dtype = _TFL_DTYPES[t.Type()]
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        buf = model.Buffers(t.Buffer())
        const = None
        if buf is not None and buf.DataLength() > 0:
            const = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape)
        tensors.append(TflTensor(t.Name().decode(), shape, dtype, const))
    ops = []
    for k in range(sub.OperatorsLength()):
        op = sub.Operators(k)
        custom = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        ops.append(
            TflOp(
                code=codes[op.OpcodeIndex()],
                inputs=tuple(int(i) for i in op.InputsAsNumpy()),
                outputs=tuple(int(i) for i in op.OutputsAsNumpy()),
                options=_read_options(schema, op, option_names),
                custom_options=custom,
            )
        )
    desc = model.Description().decode() if model.Description() else ""
    return TflGraph(tuple(tensors), tuple(ops), tuple(int(i) for i in sub.InputsAsNumpy()),
                    tuple(int(i) for i in sub.OutputsAsNumpy()), desc)  # fmt: skip


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding (the extra pixel goes at the end), as explicit (begin, end)."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class _Builder:
    """Accumulates ONNX nodes and initializers while walking the TFLite ops in order."""

    def __init__(self, graph: TflGraph, renames: dict[int, str]) -> None:
        self.graph = graph
        self.renames = renames  # graph outputs -> their requested names
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.folded: dict[int, np.ndarray] = {}  # outputs of DEQUANTIZE on constants
        self.names: dict[int, str] = {}  # tensor index -> ONNX value name (activations only)
        self._init_names: set[str] = set()

    def const(self, index: int) -> np.ndarray:
        if index in self.folded:
            return self.folded[index]
        data = self.graph.tensors[index].data
        if data is None:
            raise ConversionError(f"tensor {index} {self.graph.tensors[index].name!r} must be a constant here")
        return data

    def is_const(self, index: int) -> bool:
        return index in self.folded or self.graph.tensors[index].data is not None

    def value(self, index: int) -> str:
        if index in self.names:
            return self.names[index]
        if self.is_const(index):
            return self.initializer(self.graph.tensors[index].name, self._nchw_const(self.const(index)))
        raise ConversionError(f"tensor {index} {self.graph.tensors[index].name!r} is used before it is produced")

    def initializer(self, name: str, array: np.ndarray) -> str:
        base, n = name, 1
        while name in self._init_names:
            name, n = f"{base}_{n}", n + 1
        self._init_names.add(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    @staticmethod
    def _nchw_const(array: np.ndarray) -> np.ndarray:
        """An elementwise-op constant in NCHW: 4-D NHWC is transposed, a per-channel vector gets [C,1,1]."""
        if array.ndim == 4:
            return array.transpose(0, 3, 1, 2)
        if array.ndim == 1 and array.size > 1:
            return array.reshape(-1, 1, 1)
        return array

    def out(self, index: int) -> str:
        name = self.renames.get(index, self.graph.tensors[index].name)
        self.names[index] = name
        return name

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=f"{op_type}_{len(self.nodes)}", **attrs))

    def activation(self, fused: int, raw: str, final: str) -> None:
        """Emit the op's fused activation between its raw result ``raw`` and its output ``final``."""
        kind = _FUSED.get(fused, "unsupported")
        if kind == "unsupported":
            raise ConversionError(f"fused activation {fused} is not supported (only NONE, RELU, RELU6)")
        if kind is None:
            self.nodes[-1].output[0] = final
        elif kind == "RELU":
            self.node("Relu", [raw], final)
        else:
            lo = self.initializer(f"{raw}_clip_min", np.array(0.0, np.float32))
            hi = self.initializer(f"{raw}_clip_max", np.array(6.0, np.float32))
            self.node("Clip", [raw, lo, hi], final)


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 4:
        raise ConversionError(f"expected a 4-D NHWC tensor, got shape {list(shape)}")
    return shape[1], shape[2]


def _conv_pads(b: _Builder, op: TflOp, kernel: tuple[int, int], padding: str) -> list[int]:
    h, w = _spatial(b.graph.tensors[op.inputs[0]].shape)
    if padding == _VALID:
        return [0, 0, 0, 0]
    dh, dw = op.options.get("DilationHFactor", 1), op.options.get("DilationWFactor", 1)
    top, bottom = _same_pads(h, kernel[0], op.options["StrideH"], dh)
    left, right = _same_pads(w, kernel[1], op.options["StrideW"], dw)
    return [top, left, bottom, right]


def _conv(b: _Builder, op: TflOp, depthwise: bool) -> None:
    weight = b.const(op.inputs[1]).astype(np.float32)  # conv [O,H,W,I]; depthwise [1,H,W,C*M]
    kernel = (weight.shape[1], weight.shape[2])
    pads = _conv_pads(b, op, kernel, _SCHEMA_PADDING[op.options["Padding"]])
    in_channels = b.graph.tensors[op.inputs[0]].shape[3]
    onnx_w = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
    inputs = [b.value(op.inputs[0]), b.initializer(b.graph.tensors[op.inputs[1]].name, onnx_w)]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = b.const(op.inputs[2]).astype(np.float32)
        inputs.append(b.initializer(b.graph.tensors[op.inputs[2]].name, bias))
    final = b.out(op.outputs[0])
    raw = f"{final}_preact"
    b.node(
        "Conv",
        inputs,
        raw,
        kernel_shape=list(kernel),
        strides=[op.options["StrideH"], op.options["StrideW"]],
        dilations=[op.options.get("DilationHFactor", 1), op.options.get("DilationWFactor", 1)],
        pads=pads,
        group=in_channels if depthwise else 1,
    )
    b.activation(op.options.get("FusedActivationFunction", 0), raw, final)


def _conv2d(b: _Builder, op: TflOp) -> None:
    _conv(b, op, depthwise=False)


def _depthwise(b: _Builder, op: TflOp) -> None:
    _conv(b, op, depthwise=True)


def _transpose_conv_bias(b: _Builder, op: TflOp) -> None:
    """MediaPipe's ``Convolution2DTransposeBias``: a transposed conv plus bias; options are a raw C struct
    ``TfLiteTransposeConvParams {padding, stride_width, stride_height}`` of little-endian int32s."""
    if len(op.custom_options) < 12:
        raise ConversionError("Convolution2DTransposeBias: custom options must hold padding, stride_w, stride_h")
    pad_code, stride_w, stride_h = struct.unpack_from("<3i", op.custom_options)
    if pad_code not in _C_PADDING:
        raise ConversionError(f"Convolution2DTransposeBias: unknown padding {pad_code}")
    weight = b.const(op.inputs[1]).astype(np.float32)  # [O,H,W,I]
    bias = b.const(op.inputs[2]).astype(np.float32)
    kh, kw = weight.shape[1], weight.shape[2]
    (h, w), (oh, ow) = _spatial(b.graph.tensors[op.inputs[0]].shape), _spatial(b.graph.tensors[op.outputs[0]].shape)
    if _C_PADDING[pad_code] == _VALID:
        pads = [0, 0, 0, 0]
    else:
        th, tw = (h - 1) * stride_h + kh - oh, (w - 1) * stride_w + kw - ow
        if th < 0 or tw < 0:
            raise ConversionError("Convolution2DTransposeBias: SAME padding with output_padding is not supported")
        pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
    inputs = [
        b.value(op.inputs[0]),
        b.initializer(b.graph.tensors[op.inputs[1]].name, weight.transpose(3, 0, 1, 2)),  # [I,O,H,W]
        b.initializer(b.graph.tensors[op.inputs[2]].name, bias),
    ]
    b.node("ConvTranspose", inputs, b.out(op.outputs[0]), kernel_shape=[kh, kw], strides=[stride_h, stride_w],
           pads=pads)  # fmt: skip


def _dequantize(b: _Builder, op: TflOp) -> None:
    if not b.is_const(op.inputs[0]):
        raise ConversionError("DEQUANTIZE of a non-constant tensor is not supported (only float16 weights)")
    b.folded[op.outputs[0]] = b.const(op.inputs[0]).astype(np.float32)


def _average_pool(b: _Builder, op: TflOp) -> None:
    o = op.options
    kernel = (o["FilterHeight"], o["FilterWidth"])
    h, w = _spatial(b.graph.tensors[op.inputs[0]].shape)
    if _SCHEMA_PADDING[o["Padding"]] == _VALID:
        pads = [0, 0, 0, 0]
    else:
        top, bottom = _same_pads(h, kernel[0], o["StrideH"])
        left, right = _same_pads(w, kernel[1], o["StrideW"])
        pads = [top, left, bottom, right]
    final = b.out(op.outputs[0])
    raw = f"{final}_preact"
    # count_include_pad=0: TFLite averages only the pixels inside the image
    b.node("AveragePool", [b.value(op.inputs[0])], raw, kernel_shape=list(kernel), strides=[o["StrideH"], o["StrideW"]],
           pads=pads, count_include_pad=0)  # fmt: skip
    b.activation(o.get("FusedActivationFunction", 0), raw, final)


def _binary(onnx_op: str) -> Callable[[_Builder, TflOp], None]:
    def convert(b: _Builder, op: TflOp) -> None:
        final = b.out(op.outputs[0])
        raw = f"{final}_preact"
        b.node(onnx_op, [b.value(op.inputs[0]), b.value(op.inputs[1])], raw)
        b.activation(op.options.get("FusedActivationFunction", 0), raw, final)

    return convert


def _unary(onnx_op: str) -> Callable[[_Builder, TflOp], None]:
    def convert(b: _Builder, op: TflOp) -> None:
        b.node(onnx_op, [b.value(op.inputs[0])], b.out(op.outputs[0]))

    return convert


def _resize_bilinear(b: _Builder, op: TflOp) -> None:
    size = [int(v) for v in b.const(op.inputs[1])]
    if op.options.get("AlignCorners"):
        mode = "align_corners"
    elif op.options.get("HalfPixelCenters"):
        mode = "half_pixel"
    else:
        mode = "asymmetric"
    sizes = b.initializer(f"{b.graph.tensors[op.outputs[0]].name}_sizes", np.array(size, np.int64))
    b.node("Resize", [b.value(op.inputs[0]), "", "", sizes], b.out(op.outputs[0]), mode="linear", axes=[2, 3],
           coordinate_transformation_mode=mode)  # fmt: skip


CONVERTERS: dict[str, Callable[[_Builder, TflOp], None]] = {
    "ADD": _binary("Add"),
    "AVERAGE_POOL_2D": _average_pool,
    "CONV_2D": _conv2d,
    "Convolution2DTransposeBias": _transpose_conv_bias,
    "DEPTHWISE_CONV_2D": _depthwise,
    "DEQUANTIZE": _dequantize,
    "HARD_SWISH": _unary("HardSwish"),
    "LOGISTIC": _unary("Sigmoid"),
    "MUL": _binary("Mul"),
    "RELU": _unary("Relu"),
    "RESIZE_BILINEAR": _resize_bilinear,
}


def graph_to_onnx(
    graph: TflGraph,
    *,
    input_names: tuple[str, ...] = ("input",),
    output_names: tuple[str, ...] = ("output",),
    dynamic_batch: bool = True,
    doc: str = "",
) -> onnx.ModelProto:
    """Map a parsed TFLite graph to an NCHW ONNX model; ``ConversionError`` for anything unsupported."""
    unsupported = sorted({op.code for op in graph.ops} - CONVERTERS.keys())
    if unsupported:
        where = {code: next(k for k, op in enumerate(graph.ops) if op.code == code) for code in unsupported}
        listed = ", ".join(f"{code} (first at op #{where[code]})" for code in unsupported)
        raise ConversionError(f"unsupported TFLite op(s): {listed}; supported: {', '.join(sorted(CONVERTERS))}")
    if len(input_names) != len(graph.inputs) or len(output_names) != len(graph.outputs):
        raise ConversionError(f"the model has {len(graph.inputs)} input(s) and {len(graph.outputs)} output(s)")
    renames = dict(zip(graph.outputs, output_names, strict=True))
    b = _Builder(graph, renames)
    graph_inputs = []
    for index, name in zip(graph.inputs, input_names, strict=True):
        b.names[index] = name
        graph_inputs.append(_value_info(graph.tensors[index], name, dynamic_batch))
    for op in graph.ops:
        CONVERTERS[op.code](b, op)
    graph_outputs = [_value_info(graph.tensors[i], name, dynamic_batch) for i, name in renames.items()]
    onnx_graph = helper.make_graph(b.nodes, "tflite_graph", graph_inputs, graph_outputs, initializer=b.initializers)
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        doc_string=doc,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _value_info(tensor: TflTensor, name: str, dynamic_batch: bool) -> onnx.ValueInfoProto:
    shape: list[int | str] = list(tensor.shape)
    if len(shape) == 4:
        shape = [shape[0], shape[3], shape[1], shape[2]]
    if dynamic_batch and shape:
        shape[0] = "N"
    if tensor.dtype is not np.float32:
        raise ConversionError(f"graph input/output {tensor.name!r} must be float32")
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def convert(data: bytes, schema: ModuleType, **kwargs: Any) -> onnx.ModelProto:
    """TFLite flatbuffer bytes -> checked ONNX model (see ``graph_to_onnx`` for the options)."""
    graph = parse_tflite(data, schema)
    kwargs.setdefault("doc", f"Converted from TFLite: {graph.description}")
    return graph_to_onnx(graph, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tflite", type=Path)
    parser.add_argument("--schema", type=Path, required=True, help="schema_py_generated.py (TFLite flatbuffer schema)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--static-batch", action="store_true", help="keep the TFLite batch size instead of N")
    args = parser.parse_args(argv)
    try:
        model = convert(args.tflite.read_bytes(), load_schema(args.schema), dynamic_batch=not args.static_batch)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.output.write_bytes(model.SerializeToString())
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
