"""Worker throughput: real-size photos through the full worker path vs the bare in-memory loop, same run.

Full path: ``run_batch`` against a moto server (S3 + DynamoDB over HTTP, in this process): claim, download,
decode, infer, measure, render mask + overlay, upload, conditional complete, EMF metrics.
Bare loop: decode + preprocess + infer + postprocess + render, one image after another, bytes in memory.
Their ratio is the pipeline's efficiency (above 1 means the I/O threads hide more than the storage calls cost).
The bare loop runs twice: on the 1-2 MP photos of the full path, and on 12 MP phone photos (4032x3024, half of
them stored sideways with an EXIF rotation, as phones store portrait shots), where decoding and full-size
postprocessing, not the model, set the pace. Each bare loop is also reported per CPU-second of this process
(all threads): on a shared machine wall time follows the neighbours' load, CPU time follows the work.
Start-up: ``python -m runtime.worker`` as a fresh process with a one-job batch, from spawn to its first
``ImagesProcessed`` metric line (imports + model load + one image), what a task pays before its first result.

Note: the moto server runs in this same process and competes with the worker for the GIL and the cores, so the
full-path figure is a pessimistic bound on what the worker does against real S3 and DynamoDB.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.figures import Figure

BENCH = "worker_throughput"
REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "person"
FULL_COUNT = 200
QUICK_COUNT = 3
LARGE_SIZE = (4032, 3024)  # a 12 MP phone photo
LARGE_COUNT = 8
QUICK_LARGE_COUNT = 1
EXIF_ORIENTATION = 0x0112


def _sources() -> list[np.ndarray]:
    import matplotlib
    import skimage.data as data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    photos.append(np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")))
    return [np.asarray(p.convert("RGB") if isinstance(p, Image.Image) else p, dtype=np.uint8) for p in photos]


def make_photos(count: int, *, seed: int = 4) -> list[bytes]:
    """``count`` JPEGs of 1 to 2 megapixels: package photos upscaled, cropped, flipped, at varying quality."""
    rng = np.random.default_rng(seed)
    sources = _sources()
    out = []
    for i in range(count):
        src = Image.fromarray(sources[i % len(sources)])
        target_mp = rng.uniform(1.0, 2.0) * 1e6
        scale = (target_mp / (src.width * src.height)) ** 0.5
        img = src.resize((round(src.width * scale), round(src.height * scale)), Image.Resampling.BILINEAR)
        dx, dy = (int(v) for v in rng.integers(0, 40, 2))
        img = img.crop((dx, dy, img.width - (40 - dx), img.height - (40 - dy)))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(rng.integers(80, 96)))
        out.append(buf.getvalue())
    return out


def make_large_photos(count: int) -> list[bytes]:
    """``count`` 12 MP JPEGs (quality 90) from the package photos; every other one stored sideways with EXIF
    orientation 6 ("rotate 90 clockwise to display"), as a phone stores a portrait shot."""
    sources = _sources()
    out = []
    for i in range(count):
        img = Image.fromarray(sources[i % len(sources)]).resize(LARGE_SIZE, Image.Resampling.BICUBIC)
        exif = Image.Exif()
        if i % 2:
            img = img.transpose(Image.Transpose.ROTATE_90)  # stored sideways; the tag turns it upright again
            exif[EXIF_ORIENTATION] = 6
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90, exif=exif)
        out.append(buf.getvalue())
    return out


def _cores() -> int:
    from runtime.worker.models import cpu_count

    return cpu_count()


def bare_loop(photos: list[bytes], settings: Any, registry: Any) -> float:
    """Seconds for decode + analyse + render of every photo, sequentially, no storage."""
    from runtime.worker.process import analyse, load_photo, render

    processor = registry.get(MODEL)
    started = time.perf_counter()
    for data in photos:
        photo = load_photo(processor.card, data, max_pixels=settings.max_pixels)
        analysis = analyse(processor, photo, mm_per_pixel=0.1)
        render(processor, photo, analysis.labels)
    return time.perf_counter() - started


def _with_cpu(loop: Any, *args: Any) -> tuple[float, float]:
    """(what ``loop`` returns: wall seconds, CPU seconds of this process meanwhile, every thread included).

    Images per CPU-second is what compute costs and what a busy neighbour cannot shrink: on a shared machine a
    loop's wall time grows with the neighbours' load, its CPU time hardly at all.
    """
    started = time.process_time()
    wall_s = loop(*args)
    return wall_s, time.process_time() - started


def _submit_all(settings: Any, photos: list[bytes]) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    from runtime.common import keys
    from runtime.common.aws import client
    from runtime.common.jobs import JobStore, NewJob

    store = JobStore.from_settings(settings)
    s3 = client("s3", settings)
    batch_id = uuid.uuid4().hex

    def one(data: bytes) -> str:
        job_id = uuid.uuid4().hex
        key = keys.upload_key(batch_id, job_id, "jpg")
        s3.put_object(Bucket=settings.bucket, Key=key, Body=data)
        store.create(
            NewJob(
                job_id, batch_id, key, "photo.jpg", MODEL, size_bytes=len(data), image_format="JPEG", mm_per_pixel=0.1
            )
        )
        return job_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, photos))


def startup_ms(resources: Any, settings: Any, photo: bytes) -> float:
    """Spawn ``python -m runtime.worker`` with a one-job batch; ms until its first ImagesProcessed line."""
    from runtime.common.messages import BatchMessage
    from runtime.common.settings import JOB_BATCH_ENV

    (job_id,) = _submit_all(settings, [photo])
    env = {
        **os.environ,
        **resources.env(),
        JOB_BATCH_ENV: BatchMessage(job_ids=(job_id,)).to_body(),
        "PYTHONPATH": str(REPO_ROOT),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.worker"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first is None and '"ImagesProcessed"' in line:
            first = (time.perf_counter() - started) * 1000.0
    proc.wait(timeout=120)
    if proc.returncode != 0 or first is None:
        raise RuntimeError(f"worker exited {proc.returncode} without a result")
    return first


def run(*, quick: bool = False) -> list[Figure]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from moto.server import ThreadedMotoServer

    from local.procs import free_port
    from local.resources import create_resources
    from runtime.worker.batch import run_batch
    from runtime.worker.models import ModelRegistry

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log: one line per request
    count = QUICK_COUNT if quick else FULL_COUNT
    photos = make_photos(count)
    megapixels = float(np.mean([_pixels(p) for p in photos])) / 1e6
    cores = _cores()

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        resources = create_resources(f"http://127.0.0.1:{port}", prefix=f"bench{uuid.uuid4().hex[:8]}")
        settings = resources.settings()
        registry = ModelRegistry(settings.models_dir)
        registry.get(MODEL)  # both measurements start with the model loaded
        bare_s, bare_cpu_s = _with_cpu(bare_loop, photos, settings, registry)
        large = make_large_photos(QUICK_LARGE_COUNT if quick else LARGE_COUNT)
        large_count = len(large)
        large_s, large_cpu_s = _with_cpu(bare_loop, large, settings, registry)
        del large  # 12 MP photos are large; the full path does not need them
        ids = _submit_all(settings, photos)
        started = time.perf_counter()
        report = run_batch(settings, ids, registry=registry, metrics_stream=io.StringIO())
        full_s = time.perf_counter() - started
        compute_share = report.summary()["compute_share"]
        if len(report.succeeded) != count:
            raise RuntimeError(f"only {len(report.succeeded)} of {count} jobs succeeded: {report.summary()}")
        first_ms = startup_ms(resources, settings, photos[0])
    finally:
        server.stop()

    full_rate = count / full_s / cores
    bare_rate = count / bare_s / cores
    note = f"{count} JPEG photos, mean {megapixels:.2f} MP, model {MODEL}, {cores} core(s)"
    return [
        Figure(
            BENCH,
            "full worker path, images/s per core",
            round(full_rate, 4),
            "images/s/core",
            baseline_name="bare loop (decode+infer+postprocess+render in memory)",
            baseline_value=round(bare_rate, 4),
            notes=f"{note}; ratio = pipeline efficiency; moto in-process; inference thread busy {compute_share:.0%}",
        ),
        Figure(BENCH, "bare loop, images/s per core", round(bare_rate, 4), "images/s/core", notes=note),
        Figure(BENCH, "bare loop, images per CPU-second", round(count / bare_cpu_s, 4), "images/CPU-s", notes=note),
        Figure(
            BENCH,
            "bare loop at 12 MP, images/s per core",
            round(large_count / large_s / cores, 4),
            "images/s/core",
            notes=f"{large_count} JPEG photos of {LARGE_SIZE[0]}x{LARGE_SIZE[1]}, half with EXIF orientation 6, "
            f"model {MODEL}, {cores} core(s)",
        ),
        Figure(
            BENCH,
            "bare loop at 12 MP, images per CPU-second",
            round(large_count / large_cpu_s, 4),
            "images/CPU-s",
            notes=f"{large_count} JPEG photos of {LARGE_SIZE[0]}x{LARGE_SIZE[1]}, half with EXIF orientation 6, "
            f"model {MODEL}",
        ),
        Figure(
            BENCH,
            "process start to first result",
            round(first_ms, 1),
            "ms",
            higher_is_better=False,
            notes="python -m runtime.worker, 1-job batch: imports + model load + one image + storage calls",
        ),
    ]


def _pixels(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as img:
        return img.width * img.height
