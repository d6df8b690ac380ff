"""Where the worker's time goes on real-size photos: ``python -m bench.profile_worker [--images N] [--size WxH]``.

Micro-optimisations belong where a profile shows the time, so this prints both a per-stage breakdown
(decode, preprocess, inference, postprocess, mask PNG, overlay JPEG) and cProfile's top functions for the
in-memory path the worker runs per image. It is not a benchmark module (the harness does not run it) and writes
nothing. ``--reference`` profiles the path the accuracy tests compare against (every pixel decoded, float
postprocessing). ``--formats`` instead compares overlay encodings (JPEG and
WebP at several settings): encode time, size, and SSIM against the unencoded overlay, so formats are compared at
equal visual quality.
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
from collections.abc import Callable

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


def _cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU time of ``fn`` in ms (CPU, not wall time: the machine is shared)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        fn()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def compare_formats(overlay: np.ndarray, repeats: int = 5) -> list[tuple[str, float, float, int]]:
    """(format and settings, SSIM, encode CPU ms, bytes) for JPEG and WebP encodings of ``overlay`` (RGB)."""
    import cv2
    from PIL import Image
    from skimage.metrics import structural_similarity

    bgr = cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
    picture = Image.fromarray(overlay)

    def jpeg(quality: int) -> Callable[[], bytes]:
        return lambda: cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()

    def webp(quality: int, method: int) -> Callable[[], bytes]:
        def encode() -> bytes:
            buf = io.BytesIO()
            picture.save(buf, format="WEBP", quality=quality, method=method)
            return buf.getvalue()

        return encode

    candidates = [(f"JPEG q{q}", jpeg(q)) for q in (75, 80, 85, 90, 95)]
    candidates += [(f"WebP q{q} method {m}", webp(q, m)) for m in (0, 4) for q in (70, 80, 90, 95)]
    rows = []
    for name, encode in candidates:
        data = encode()
        with Image.open(io.BytesIO(data)) as img:
            decoded = np.asarray(img.convert("RGB"))
        ssim = structural_similarity(overlay, decoded, channel_axis=2, data_range=255)
        rows.append((name, float(ssim), _cpu_ms(encode, repeats), len(data)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker", description=__doc__)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", default="4032x3024", help="WIDTHxHEIGHT of the test photos")
    parser.add_argument("--model", default="person")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--reference", action="store_true", help="the accuracy tests' reference path")
    parser.add_argument("--formats", action="store_true", help="compare overlay encodings instead")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from runtime.common.settings import Settings
    from runtime.worker.models import ModelRegistry
    from runtime.worker.process import analyse, load_photo
    from runtime.worker.render import mask_png, overlay_jpeg, tint

    settings = Settings()
    processor = ModelRegistry(settings.models_dir, exact=args.reference).get(args.model)
    classes = processor.card.classes
    images = photos(args.images, (width, height))

    if args.formats:
        print(f"overlay encodings of {width}x{height} photos, model {args.model!r} (SSIM vs the unencoded overlay)")
        print(f"  {'format':22s} {'SSIM':>7s} {'CPU ms':>8s} {'KB':>6s}")
        table: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
        for data in images[: min(4, len(images))]:
            photo = load_photo(processor.card, data, max_pixels=settings.max_pixels)
            labels = analyse(processor, photo, mm_per_pixel=None).labels
            for name, ssim, ms, size in compare_formats(tint(photo.picture, labels, classes)):
                table[name].append((ssim, ms, size))
        for name, rows in table.items():
            ssim, ms, size = (statistics.median(v) for v in zip(*rows, strict=True))
            print(f"  {name:22s} {ssim:7.4f} {ms:8.1f} {size / 1024:6.0f}")
        return 0

    stages: dict[str, list[float]] = defaultdict(list)

    def one(data: bytes) -> None:
        t0 = time.perf_counter()
        photo = load_photo(processor.card, data, max_pixels=settings.max_pixels, full=args.reference)
        t1 = time.perf_counter()
        analysis = analyse(processor, photo, mm_per_pixel=None)
        t2 = time.perf_counter()
        mask_png(analysis.labels, classes)
        t3 = time.perf_counter()
        overlay_jpeg(photo.picture, analysis.labels, classes)
        t4 = time.perf_counter()
        stages["decode"].append((t1 - t0) * 1000)
        for key, ms in analysis.timings_ms.items():
            stages[key].append(ms)
        stages["mask PNG"].append((t3 - t2) * 1000)
        stages["overlay JPEG"].append((t4 - t3) * 1000)
        stages["total"].append((t4 - t0) * 1000)

    one(images[0])  # warm-up: first inference allocates onnxruntime's arenas
    stages.clear()
    profiler = cProfile.Profile()
    profiler.enable()
    for data in images:
        one(data)
    profiler.disable()

    total = statistics.median(stages["total"])
    path = "reference path" if args.reference else "worker path"
    print(f"{len(images)} photos of {width}x{height}, model {args.model!r}, {path}: median ms per image by stage")
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
