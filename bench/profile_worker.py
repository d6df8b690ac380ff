"""Where the worker's time goes on real-size photos: ``python -m bench.profile_worker [--images N] [--size WxH]``.

Micro-optimisations belong where a profile shows the time, so this prints both a per-stage breakdown
(decode, preprocess, inference, postprocess, PNG rendering) and cProfile's top functions for the in-memory path
the worker runs per image. It is not a benchmark module (the harness does not run it) and writes nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections import defaultdict

import numpy as np


def photos(count: int, size: tuple[int, int]) -> list[bytes]:
    """Phone-camera-sized JPEGs (quality 90) made from the real photos that ship inside test packages."""
    import cv2
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out: list[bytes] = []
    for i in range(count):
        rgb = cv2.resize(sources[i % len(sources)], size, interpolation=cv2.INTER_CUBIC)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out.append(buf.tobytes())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker", description=__doc__)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", default="4032x3024", help="WIDTHxHEIGHT of the test photos")
    parser.add_argument("--model", default="person")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from runtime.common.settings import Settings
    from runtime.worker.decode import decode
    from runtime.worker.models import ModelRegistry
    from runtime.worker.process import analyse, render

    settings = Settings()
    processor = ModelRegistry(settings.models_dir).get(args.model)
    images = photos(args.images, (width, height))
    stages: dict[str, list[float]] = defaultdict(list)

    def one(data: bytes) -> None:
        t0 = time.perf_counter()
        decoded = decode(data, max_pixels=settings.max_pixels)
        t1 = time.perf_counter()
        analysis = analyse(processor, decoded.rgb, mm_per_pixel=None)
        t2 = time.perf_counter()
        render(processor, decoded.rgb, analysis.labels)
        t3 = time.perf_counter()
        stages["decode"].append((t1 - t0) * 1000)
        for key, ms in analysis.timings_ms.items():
            stages[key].append(ms)
        stages["render PNGs"].append((t3 - t2) * 1000)
        stages["total"].append((t3 - t0) * 1000)

    one(images[0])  # warm-up: first inference allocates onnxruntime's arenas
    stages.clear()
    profiler = cProfile.Profile()
    profiler.enable()
    for data in images:
        one(data)
    profiler.disable()

    total = statistics.median(stages["total"])
    print(f"{len(images)} photos of {width}x{height}, model {args.model!r}: median ms per image by stage")
    for stage, values in stages.items():
        med = statistics.median(values)
        print(f"  {stage:12s} {med:8.1f} ms  {100 * med / total:5.1f} %")
    print(f"  => {1000 / total:.2f} images/s on one thread of this process")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.top)
    print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
