"""Card-driven pre/post-processing and measurements, on exact synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.common.cards import ClassSpec, InputSpec, OutputSpec
from runtime.worker.measure import measure, measure_class
from runtime.worker.tensors import (
    DEFAULT_MAX_SIDE,
    TensorError,
    content_size,
    labels_from_output,
    prepare,
    target_size,
)


def test_size_rules() -> None:
    assert target_size(300, 500, InputSpec(size=(256, 256))) == (256, 256)
    # short side to 736, both sides to multiples of 32 (PP-OCR style)
    assert target_size(480, 640, InputSpec(short_side=736, multiple_of=32)) == (736, 992)
    assert target_size(100, 1000, InputSpec(short_side=50, multiple_of=32, max_side=320)) == (32, 320)
    # a 20000x20 strip: the long side is capped even when the card has no max_side
    h, w = target_size(20, 20000, InputSpec(short_side=736, multiple_of=32))
    assert w <= DEFAULT_MAX_SIDE and h == 32
    assert target_size(1, 1, InputSpec(multiple_of=32)) == (32, 32)


def test_prepare_normalises_and_orders_channels() -> None:
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red
    spec = InputSpec(size=(4, 8), color_order="BGR", scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    prepared = prepare(rgb, spec)
    assert prepared.tensor.shape == (1, 3, 4, 8) and prepared.tensor.dtype == np.float32
    # BGR: channel 0 is blue (0 -> -1), channel 2 is red (255 -> +1)
    assert np.allclose(prepared.tensor[0, 0], -1.0) and np.allclose(prepared.tensor[0, 2], 1.0)
    nhwc = prepare(rgb, InputSpec(size=(4, 8), layout="NHWC", color_order="GRAY", mean=(0.0,), std=(1.0,)))
    assert nhwc.tensor.shape == (1, 4, 8, 1)


def test_keep_aspect_pads_and_crops_back() -> None:
    rgb = np.zeros((50, 100, 3), dtype=np.uint8)
    inp = InputSpec(size=(64, 64), resize="keep_aspect")
    prepared = prepare(rgb, inp)
    assert prepared.content_hw == (32, 64)
    assert np.all(prepared.tensor[0, :, 32:, :] == 0)  # padding below the content
    output = np.zeros((1, 1, 64, 64), dtype=np.float32)
    output[0, 0, :32, 32:] = 1.0  # right half of the content is foreground; the padding says "foreground" too
    output[0, 0, 32:, :] = 1.0
    labels = labels_from_output(output, prepared, inp, OutputSpec(), (ClassSpec(id=1, name="a"),))
    assert labels.shape == (50, 100)
    assert labels[:, 55:].all() and not labels[:, :45].any()  # the padding did not leak into the image


def test_softmax_and_multi_class_outputs() -> None:
    classes = (ClassSpec(id=1, name="cat"), ClassSpec(id=2, name="dog"))
    inp = InputSpec(size=(4, 4))
    prepared = prepare(np.zeros((8, 8, 3), dtype=np.uint8), inp)
    logits = np.zeros((1, 3, 4, 4), dtype=np.float32)
    logits[0, 0] = 5  # background everywhere...
    logits[0, 1, :2] = 10  # ...but cat on top
    logits[0, 2, 2:, 2:] = 10  # and dog bottom right
    labels = labels_from_output(logits, prepared, inp, OutputSpec(activation="softmax"), classes)
    assert (labels[:4] == 1).all() and (labels[4:, 4:] == 2).all() and (labels[4:, :4] == 0).all()
    with pytest.raises(TensorError, match="channel 2"):
        labels_from_output(logits[:, :2], prepared, inp, OutputSpec(activation="sigmoid"), classes)


def test_measurements() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[10:20, 10:30] = True  # 200 px
    mask[50:90, 100:150] = True  # 2000 px
    m = measure_class(mask, mm_per_pixel=0.5)
    assert m["pixels"] == 2200 and m["fraction"] == pytest.approx(0.11)
    assert m["components"] == 2 and m["largest_component_pixels"] == 2000
    assert m["bboxes"] == [[100, 50, 50, 40], [10, 10, 20, 10]]
    assert m["area_mm2"] == pytest.approx(550.0)
    empty = measure(np.zeros((5, 5), np.uint8), (ClassSpec(id=1, name="a"),), mm_per_pixel=None)
    assert empty == {"a": {"pixels": 0, "fraction": 0.0, "components": 0, "largest_component_pixels": 0, "bboxes": []}}


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (300, 400)])
@pytest.mark.parametrize("class_id", [1, 3])
def test_fast_upsampling_agrees_with_the_float_path(size: tuple[int, int], class_id: int) -> None:
    rng = np.random.default_rng(size[0])
    logits = rng.normal(0.0, 3.0, (1, 1, 16, 16)).astype(np.float32)  # a rough map: many edges to disagree on
    inp, out = InputSpec(size=(16, 16)), OutputSpec(activation="sigmoid", threshold=0.4)
    classes = (ClassSpec(id=class_id, name="a"),)
    prepared = prepare(np.zeros((*size, 3), dtype=np.uint8), inp)
    fast = labels_from_output(logits, prepared, inp, out, classes)
    exact = labels_from_output(logits, prepared, inp, out, classes, exact=True)
    assert fast.shape == exact.shape == size and fast.dtype == np.uint8
    assert set(np.unique(fast)) <= {0, class_id}
    assert np.count_nonzero(fast != exact) <= max(1, fast.size // 10_000)


def test_a_reduced_copy_gives_the_full_images_input_and_labels() -> None:
    """A reduced decode feeds the model: the tensor's shape and the labels' size follow the full image."""
    spec = InputSpec(short_side=64, multiple_of=32, resize="keep_aspect", size=None)
    full = np.zeros((600, 1000, 3), dtype=np.uint8)
    quarter = np.zeros((150, 250, 3), dtype=np.uint8)
    want, got = prepare(full, spec), prepare(quarter, spec, (600, 1000))
    assert got.tensor.shape == want.tensor.shape and got.content_hw == want.content_hw == content_size(600, 1000, spec)
    output = np.ones((1, 1, *got.tensor_hw), dtype=np.float32)
    labels = labels_from_output(output, got, spec, OutputSpec(), (ClassSpec(id=1, name="a"),))
    assert labels.shape == (600, 1000) and labels.all()
