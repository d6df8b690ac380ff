"""Test helpers for the worker: a tiny real ONNX model, cards, images, and jobs in the moto S3/DynamoDB."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

from runtime.common import keys
from runtime.common.jobs import JobStore, NewJob
from runtime.common.settings import Settings

RED = (220, 30, 30)
BLUE = (30, 40, 200)


def build_redness_model(path: Path) -> None:
    """A 1x1 conv + sigmoid: probability that a pixel is red. Real ONNX, run by real onnxruntime, and its
    answer is known exactly for synthetic images, so tests can check masks pixel for pixel."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [12.0, -6.0, -6.0])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [-2.0])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["prob"])],
        "redness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, "h", "w"])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_card(models_dir: Path, name: str, **overrides: Any) -> Path:
    card: dict[str, Any] = {
        "name": name,
        "version": "1",
        "license": "Apache-2.0",
        "source": "tests/worker/helpers.py",
        "input": {"size": [64, 64], "layout": "NCHW", "color_order": "RGB"},
        "output": {"activation": "none", "threshold": 0.5},
        "classes": [{"id": 1, "name": "red", "color": [255, 0, 0]}],
    }
    card.update(overrides)
    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    if card.get("runtime", "onnx") == "onnx" and not (folder / "model.onnx").exists():
        build_redness_model(folder / "model.onnx")
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def write_otsu_card(models_dir: Path, name: str) -> Path:
    """A classical model (OpenCV Otsu threshold, no weights): the cheapest model there is."""
    return write_card(
        models_dir,
        name,
        runtime="opencv",
        processor="otsu",
        file=None,
        input=None,
        output=None,
        classes=[{"id": 1, "name": "object", "color": [0, 255, 0]}],
    )


def red_square(size: int = 128, box: tuple[int, int, int, int] = (32, 32, 64, 64)) -> np.ndarray:
    """Blue image with one red rectangle (x, y, w, h)."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BLUE
    x, y, w, h = box
    img[y : y + h, x : x + w] = RED
    return img


def encode(rgb: np.ndarray | Image.Image, fmt: str = "PNG", **kw: Any) -> bytes:
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` with a tiny body: only a header check stops it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def submit(
    store: JobStore,
    s3: Any,
    settings: Settings,
    data: bytes,
    *,
    model: str,
    batch_id: str | None = None,
    mm_per_pixel: float | None = None,
    ext: str = "png",
    owner: str | None = None,
) -> str:
    """What the API does for an accepted upload: the image in S3, the job QUEUED in DynamoDB."""
    job_id = uuid.uuid4().hex
    batch = batch_id or uuid.uuid4().hex
    key = keys.upload_key(batch, job_id, ext)
    s3.put_object(Bucket=settings.bucket, Key=key, Body=data)
    store.create(
        NewJob(
            job_id=job_id,
            batch_id=batch,
            input_key=key,
            file_name=f"f.{ext}",
            model=model,
            size_bytes=len(data),
            mm_per_pixel=mm_per_pixel,
            owner=owner,
        )
    )
    return job_id


def read_png(s3: Any, bucket: str, key: str) -> Image.Image:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    img = Image.open(io.BytesIO(body))
    img.load()
    return img


def emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class CallLog:
    """Wraps a real boto3 client (not our code) and records each call as (operation, job id or None, the string
    values it writes), so a test can read the order in which a worker claimed, finished and downloaded jobs.
    ``hook(op, kwargs)`` runs after each call."""

    def __init__(self, real: Any, hook: Any = None) -> None:
        self._real = real
        self._hook = hook
        self.calls: list[tuple[str, str | None, dict[str, str]]] = []

    def __getattr__(self, op: str) -> Any:
        method = getattr(self._real, op)
        if not callable(method) or op.startswith("_") or op in ("exceptions", "meta", "get_paginator"):
            return method

        def call(**kwargs: Any) -> Any:
            out = method(**kwargs)
            key = kwargs.get("Key")
            if isinstance(key, str):  # S3: uploads/<batch>/<job>.<ext>
                job: str | None = key.rsplit("/", 1)[-1].split(".")[0]
            else:
                pk = (key or {}).get("pk", {}).get("S", "")
                job = pk.removeprefix("job#") if pk.startswith("job#") else None
            values = {
                k: v["S"]
                for k, v in kwargs.get("ExpressionAttributeValues", {}).items()
                if isinstance(v, dict) and "S" in v
            }
            self.calls.append((op, job, values))
            if self._hook is not None:
                self._hook(op, kwargs)
            return out

        return call

    def transitions(self) -> list[tuple[str, str]]:
        """(job id, new status) for every status change a worker wrote (claim, result, failure, release), in call
        order: ``JobStore`` writes the new status first in its SET clause (``:s0``)."""
        return [
            (job, values[":s0"])
            for op, job, values in self.calls
            if op == "update_item"
            and job is not None
            and values.get(":s0") in ("RUNNING", "SUCCEEDED", "FAILED", "QUEUED")
        ]
