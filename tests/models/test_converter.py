"""The TFLite->ONNX converter: op mappings checked against NumPy references, clear errors, reproducibility.

The hand-built graphs below go through the same ``graph_to_onnx`` as the real model and run in onnxruntime; the
NumPy references follow TFLite's NHWC semantics (SAME padding puts the odd pixel at the end).
"""

from __future__ import annotations

import struct
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tools.fetch_sources import MEDIAPIPE, cached_wheel, convert_selfie
from tools.tflite_to_onnx import ConversionError, TflGraph, TflOp, TflTensor, graph_to_onnx, parse_tflite

COMMITTED = Path(__file__).resolve().parents[2] / "runtime" / "models" / "person" / "model.onnx"
RNG = np.random.default_rng(7)


def _run(graph: TflGraph, x_nhwc: np.ndarray) -> np.ndarray:
    model = graph_to_onnx(graph)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))})
    return out.transpose(0, 2, 3, 1)


def _pad_same(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    size = x.shape[1]
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return np.pad(x, ((0, 0), (total // 2, total - total // 2), (total // 2, total - total // 2), (0, 0)))


def _conv_reference(x: np.ndarray, w: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """TFLite CONV_2D, SAME padding: x [N,H,W,C], w [O,kh,kw,C]."""
    k = w.shape[1]
    xp = _pad_same(x, k, stride)
    out_size = -(-x.shape[1] // stride)
    y = np.zeros((x.shape[0], out_size, out_size, w.shape[0]), np.float64)
    for i in range(out_size):
        for j in range(out_size):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            y[:, i, j, :] = np.einsum("nhwc,ohwc->no", patch, w)
    return y + bias


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_conv_same_stride2_fp16_weights_relu6() -> None:
    x = _f32(2, 8, 8, 3)  # 8 -> 4 with k3 s2: SAME pads 0 before, 1 after; batch 2: the batch dimension is symbolic
    w16, b16 = _f32(4, 3, 3, 3).astype(np.float16), _f32(4).astype(np.float16)
    tensors = (
        TflTensor("x", (1, 8, 8, 3), np.float32),
        TflTensor("w16", w16.shape, np.float16, w16),
        TflTensor("b16", b16.shape, np.float16, b16),
        TflTensor("w", w16.shape, np.float32),
        TflTensor("b", b16.shape, np.float32),
        TflTensor("y", (1, 4, 4, 4), np.float32),
    )
    conv_opts = {"Padding": 0, "StrideH": 2, "StrideW": 2, "FusedActivationFunction": 3}
    ops = (
        TflOp("DEQUANTIZE", (1,), (3,)),
        TflOp("DEQUANTIZE", (2,), (4,)),
        TflOp("CONV_2D", (0, 3, 4), (5,), conv_opts),
    )
    got = _run(TflGraph(tensors, ops, (0,), (5,)), x)
    want = np.clip(_conv_reference(x, w16.astype(np.float32), b16.astype(np.float32), 2), 0, 6)
    assert got.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (want == 6).any() or (want == 0).any()  # the activation is exercised


def test_transpose_conv_bias_custom_op() -> None:
    x, w, b = _f32(1, 3, 3, 5), _f32(2, 2, 2, 5), _f32(2)  # w [O,kh,kw,I], stride 2 doubles the size
    tensors = (
        TflTensor("x", x.shape, np.float32),
        TflTensor("w", w.shape, np.float32, w),
        TflTensor("b", b.shape, np.float32, b),
        TflTensor("y", (1, 6, 6, 2), np.float32),
    )
    options = struct.pack("<3i", 1, 2, 2)  # TfLiteTransposeConvParams: SAME, stride_w, stride_h
    op = TflOp("Convolution2DTransposeBias", (0, 1, 2), (3,), custom_options=options)
    graph = TflGraph(tensors, (op,), (0,), (3,))
    got = _run(graph, x)
    want = np.zeros((1, 6, 6, 2))
    for a in range(2):
        for c in range(2):
            want[:, a::2, c::2, :] = np.einsum("nijc,oc->nijo", x, w[:, a, c, :])
    np.testing.assert_allclose(got, want + b, atol=1e-5)


def test_average_pool_same_excludes_padding_and_hard_swish() -> None:
    x = _f32(1, 5, 5, 2)
    tensors = (
        TflTensor("x", x.shape, np.float32),
        TflTensor("p", (1, 3, 3, 2), np.float32),
        TflTensor("y", (1, 3, 3, 2), np.float32),
    )
    pool = {"Padding": 0, "FilterHeight": 2, "FilterWidth": 2, "StrideH": 2, "StrideW": 2}
    ops = (TflOp("AVERAGE_POOL_2D", (0,), (1,), pool), TflOp("HARD_SWISH", (1,), (2,)))
    got = _run(TflGraph(tensors, ops, (0,), (2,)), x)
    pooled = np.zeros((1, 3, 3, 2))
    for i in range(3):
        for j in range(3):
            pooled[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(1, 2))  # window clipped at 5
    want = pooled * np.clip(pooled + 3, 0, 6) / 6
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_unsupported_op_is_named_with_its_position_and_the_supported_set() -> None:
    tensors = (TflTensor("x", (1, 4, 4, 1), np.float32), TflTensor("y", (1, 4, 4, 1), np.float32))
    graph = TflGraph(tensors, (TflOp("RELU", (0,), (1,)), TflOp("SQUARED_DIFFERENCE", (1, 1), (1,))), (0,), (1,))
    with pytest.raises(ConversionError) as err:
        graph_to_onnx(graph)
    message = str(err.value)
    assert "SQUARED_DIFFERENCE (first at op #1)" in message
    assert "Convolution2DTransposeBias" in message and "CONV_2D" in message


def test_unsupported_fused_activation_is_refused() -> None:
    tensors = (TflTensor("x", (1, 2, 2, 1), np.float32), TflTensor("y", (1, 2, 2, 1), np.float32))
    graph = TflGraph(tensors, (TflOp("ADD", (0, 0), (1,), {"FusedActivationFunction": 4}),), (0,), (1,))
    with pytest.raises(ConversionError, match="fused activation 4"):
        graph_to_onnx(graph)


def test_non_tflite_bytes_are_refused() -> None:
    with pytest.raises(ConversionError, match="TFL3"):
        parse_tflite(b"\x89PNG\r\n\x1a\n" + bytes(32), types.ModuleType("unused_schema"))


@pytest.mark.skipif(cached_wheel(MEDIAPIPE) is None, reason="mediapipe wheel not cached (the slow tests fetch it)")
def test_converter_reproduces_committed_model_from_cached_wheel() -> None:
    wheel = cached_wheel(MEDIAPIPE)
    assert wheel is not None
    assert convert_selfie(wheel) == COMMITTED.read_bytes()
