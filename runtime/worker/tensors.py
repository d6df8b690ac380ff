"""Card-driven pre- and post-processing: the only place that turns pixels into tensors and back.

Everything here is read from ``InputSpec``/``OutputSpec`` (D5); there is deliberately no branch on a
model's name, so a new model is a new card, not new code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from runtime.common.cards import ClassSpec, InputSpec, OutputSpec

# Without a card ``max_side`` a size rule could ask for an enormous tensor (a 20000x20 strip with short_side=736
# would become 736x736000). This caps the long side of the model input whatever the card says.
DEFAULT_MAX_SIDE = 4096


class TensorError(ValueError):
    """The model's output does not have a shape the card can explain."""


@dataclass(frozen=True)
class Prepared:
    tensor: np.ndarray  # the model input, batch of 1
    tensor_hw: tuple[int, int]  # the tensor's H, W
    content_hw: tuple[int, int]  # the part of the tensor's H, W holding the image (the rest is padding)
    image_hw: tuple[int, int]  # the original image size


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def target_size(height: int, width: int, spec: InputSpec) -> tuple[int, int]:
    """The (h, w) of the model input for an image of this size."""
    if spec.size is not None:
        return int(spec.size[0]), int(spec.size[1])
    scale = spec.short_side / min(height, width) if spec.short_side else 1.0
    max_side = min(spec.max_side or DEFAULT_MAX_SIDE, DEFAULT_MAX_SIDE)
    scale = min(scale, max_side / max(height, width))
    m = spec.multiple_of
    h = min(_round_to(height * scale, m), max(m, max_side // m * m))
    w = min(_round_to(width * scale, m), max(m, max_side // m * m))
    return h, w


def _content_size(height: int, width: int, target: tuple[int, int], spec: InputSpec) -> tuple[int, int]:
    """Stretch fills the target; keep_aspect fits the image inside it (the rest is zero padding)."""
    th, tw = target
    if spec.resize == "stretch":
        return th, tw
    scale = min(th / height, tw / width)
    return max(1, min(th, math.floor(height * scale + 0.5))), max(1, min(tw, math.floor(width * scale + 0.5)))


def content_size(height: int, width: int, spec: InputSpec) -> tuple[int, int]:
    """(h, w) of the part of the model input that holds an image of this size: the pixels the model sees."""
    return _content_size(height, width, target_size(height, width, spec), spec)


def prepare(rgb: np.ndarray, spec: InputSpec, image_hw: tuple[int, int] | None = None) -> Prepared:
    """RGB uint8 HxWx3 -> the card's input tensor (resize, colour order, scale/mean/std, layout).

    ``image_hw`` is the full image's (h, w) when ``rgb`` is a smaller copy of it (a reduced decode): the input
    size follows from the full size, so the tensor is the same shape whichever copy it is made from.
    """
    height, width = image_hw or rgb.shape[:2]
    target = target_size(height, width, spec)
    ch, cw = _content_size(height, width, target, spec)
    shrinking = ch * cw < rgb.shape[0] * rgb.shape[1]
    resized = cv2.resize(rgb, (cw, ch), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if spec.color_order == "BGR":
        pixels = resized[:, :, ::-1]
    elif spec.color_order == "GRAY":
        pixels = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)[:, :, None]
    else:
        pixels = resized
    channels = pixels.shape[2]
    mean = np.asarray(spec.mean[:channels] if len(spec.mean) >= channels else spec.mean * channels, np.float32)
    std = np.asarray(spec.std[:channels] if len(spec.std) >= channels else spec.std * channels, np.float32)
    content = (pixels.astype(np.float32) * np.float32(spec.scale) - mean) / std
    canvas = np.zeros((target[0], target[1], channels), dtype=np.float32)
    canvas[:ch, :cw] = content
    tensor = canvas.transpose(2, 0, 1) if spec.layout == "NCHW" else canvas
    return Prepared(np.ascontiguousarray(tensor[None]), target, (ch, cw), (height, width))


def _activate(maps: np.ndarray, activation: str) -> np.ndarray:
    """``maps`` is HxWxC float32."""
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-maps))
    if activation == "softmax":
        shifted = np.exp(maps - maps.max(axis=2, keepdims=True))
        return shifted / shifted.sum(axis=2, keepdims=True)
    return maps


def output_maps(output: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The first output of a batch of 1 as HxWxC, following the input's layout."""
    arr = np.asarray(output, dtype=np.float32)
    if arr.ndim == 4:
        first = arr[0]
        return first.transpose(1, 2, 0) if spec.layout == "NCHW" else first
    if arr.ndim == 3:  # [N, H, W]: one map
        return arr[0][:, :, None]
    if arr.ndim == 2:  # [H, W]
        return arr[:, :, None]
    raise TensorError(f"model output has shape {arr.shape}; expected [N,C,H,W], [N,H,W,C] or [N,H,W]")


def labels_from_output(
    output: np.ndarray,
    prepared: Prepared,
    inp: InputSpec,
    out: OutputSpec,
    classes: tuple[ClassSpec, ...],
    *,
    exact: bool = False,
) -> np.ndarray:
    """Model output -> uint8 label map at the image's size (value = class id, 0 = no class).

    Probabilities are cropped to the content (no padding), resized back bilinearly, then thresholded, so
    the mask edges follow the full-resolution image rather than the model's grid. An output on a coarser
    grid than the input (a strided head) is handled by cropping the same fraction of it.

    A single probability map (the common case) is resized as 16-bit integers (``_threshold_16bit``), about 5
    times cheaper at 12 MP than resizing floats and comparing them; the mask moves only where the probability
    is within 1/65535 of the threshold (a few dozen pixels in 12 million). ``exact`` keeps the float path
    everywhere (the accuracy tests' reference).
    """
    maps = output_maps(output, inp)
    oh, ow = maps.shape[:2]
    th, tw = prepared.tensor_hw
    ch, cw = prepared.content_hw
    maps = maps[: max(1, round(oh * ch / th)), : max(1, round(ow * cw / tw))]
    probs = _activate(maps, out.activation)
    channels = [c.id for c in classes] if out.activation == "softmax" or len(classes) > 1 else [out.channel]
    if max(channels) >= probs.shape[2]:
        raise TensorError(f"the card reads output channel {max(channels)} but the model has {probs.shape[2]}")
    height, width = prepared.image_hw
    ids = np.asarray([c.id for c in classes], dtype=np.uint8)
    if out.activation == "softmax":
        # Every pixel goes to its most likely channel; channels the card does not list are "no class".
        full = _resize_maps(probs, height, width)
        table = np.zeros(probs.shape[2], dtype=np.uint8)
        table[np.asarray(channels)] = ids
        return table[full.argmax(axis=2)]
    if len(channels) == 1 and not exact:  # the common case: one foreground map, no argmax needed
        return _threshold_16bit(probs[:, :, channels[0]], height, width, out.threshold, int(ids[0]))
    full = _resize_maps(probs[:, :, channels], height, width)
    if len(channels) == 1:
        return np.where(full[:, :, 0] > out.threshold, ids[0], 0).astype(np.uint8)
    best = full.argmax(axis=2)
    best_p = np.take_along_axis(full, best[:, :, None], axis=2)[:, :, 0]
    return np.where(best_p > out.threshold, ids[best], 0).astype(np.uint8)


def _threshold_16bit(prob: np.ndarray, height: int, width: int, threshold: float, class_id: int) -> np.ndarray:
    """One probability map, quantised to 16 bits, resized bilinearly to (height, width) and thresholded.

    ``p > threshold`` becomes ``q > floor(65535 * threshold)`` on the resized 16-bit values ``q``: the same
    comparison up to the quantisation of ``p`` (half a step of 1/65535), at a fraction of the float cost.
    """
    quantised = np.clip(prob * np.float32(65535.0) + np.float32(0.5), 0, 65535).astype(np.uint16)
    full = cv2.resize(quantised, (width, height), interpolation=cv2.INTER_LINEAR)
    labels = np.empty((height, width), dtype=np.uint8)
    # numpy, not cv2.compare: OpenCV takes a 1x1 array for a scalar and refuses the comparison.
    np.greater(full, math.floor(65535.0 * threshold), out=labels.view(np.bool_))  # 1 where above, else 0
    if class_id != 1:
        np.multiply(labels, np.uint8(class_id), out=labels)
    return labels


def _resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of HxWxC probabilities (cv2 handles up to 512 channels at once)."""
    full = cv2.resize(np.ascontiguousarray(maps, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return full[:, :, None] if full.ndim == 2 else full
