"""Upload API load: 200 KB photos through ``POST /v1/images`` at concurrency 1, 8 and 32, vs ``GET /healthz``.

The API runs as it does in production (``uvicorn runtime.api.main:app`` in its own process, settings from
``SEGSCALE_*``) against a moto server on loopback. Each upload is sniffed and fully decoded, written to S3 and to
DynamoDB before its 202; the micro-batcher sends SQS messages in the background. The baseline is the same number
of ``GET /healthz`` requests at the same concurrency in the same run: the ratio is what our handler (multipart
parsing, image checks, two storage writes) costs over the bare HTTP stack. The second baseline is the bare
handler: a framework-free loop doing what an upload must store, an S3 PUT of the same bytes and the job's
conditional DynamoDB put (``JobStore.create``), on as many threads as the upload's concurrency, against the same
moto server. uploads/s over the bare handler's rate is the share of the storage floor the API reaches; the rest
of an upload's time is HTTP, multipart parsing, the image check and the framework. A third, a bare boto3 S3 PUT
at concurrency 1, compares latencies.

Bounded and loopback only; any non-202 answer fails the benchmark (the figures are for zero errors).
Note: moto (in a child process), the API and the client threads share the machine's cores, so absolute figures
are pessimistic and noisy on a busy machine; the ratios to the same-run baselines are the point.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.figures import Figure
from local.procs import free_port

BENCH = "api_load"
REPO_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
TARGET_BYTES = 200 * 1024
CONCURRENCY = (1, 8, 32)
FULL_REQUESTS = {1: 60, 8: 160, 32: 320}
QUICK_REQUESTS = {1: 3, 8: 8, 32: 32}
UVICORN = [sys.executable, "-m", "uvicorn", "runtime.api.main:app", "--host", "127.0.0.1", "--no-access-log"]


def make_photos(count: int = 6) -> list[bytes]:
    """Real photos (skimage.data) resized so each JPEG is about 200 KB."""
    import skimage.data as data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(), data.cat()]
    out = []
    for i in range(count):
        src = Image.fromarray(np.asarray(sources[i % len(sources)], dtype=np.uint8)).convert("RGB")
        scale, blob = 1.0, b""
        for _ in range(12):  # adjust the scale until the JPEG is within 5 % of the target
            img = src.resize((max(16, round(src.width * scale)), max(16, round(src.height * scale))))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            blob = buf.getvalue()
            if abs(len(blob) - TARGET_BYTES) < 0.05 * TARGET_BYTES:
                break
            scale *= (TARGET_BYTES / len(blob)) ** 0.5
        out.append(blob)
    return out


def _models_dir(root: Path) -> Path:
    card = {
        "name": "person",
        "version": "bench",
        "license": "Apache-2.0",
        "source": "bench",
        "input": {"size": [256, 256]},
        "output": {"activation": "none"},
        "classes": [{"id": 1, "name": "person"}],
    }
    (root / "person").mkdir(parents=True)
    (root / "person" / "card.json").write_text(json.dumps(card))
    return root


def _serve_moto(port: int, stop: Any) -> None:
    """Child process: a ThreadedMotoServer with a GIL of its own, so the client threads do not slow it down."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop.wait()
    server.stop()


@contextmanager
def _stack(*, own_process: bool) -> Iterator[tuple[str, str, dict[str, str], Any]]:
    """moto server (a child process, or a thread here) + the API (uvicorn subprocess); yields (API URL, moto URL,
    env, the resources' Settings)."""
    from local.resources import create_resources

    moto_port = free_port()
    if own_process:
        ctx = multiprocessing.get_context("spawn")
        stop: Any = ctx.Event()
        moto: Any = ctx.Process(target=_serve_moto, args=(moto_port, stop), daemon=True)
    else:  # quick runs: no second interpreter to start
        stop = threading.Event()
        moto = threading.Thread(target=_serve_moto, args=(moto_port, stop), daemon=True)
    moto.start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    proc = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(moto_url, timeout=1)
                break
            except httpx.TransportError:
                if not moto.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.05)
        resources = create_resources(moto_url, prefix=f"bench{uuid.uuid4().hex[:8]}")
        with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "api.log", "w+b") as api_log:
            env = {
                **os.environ,
                **resources.env(),
                "SEGSCALE_API_KEY": API_KEY,
                "SEGSCALE_MODELS_DIR": str(_models_dir(Path(tmp) / "models")),
            }
            port = free_port()
            proc = subprocess.Popen(
                [*UVICORN, "--port", str(port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,  # the JSON request lines
                stderr=api_log,
            )
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    api_log.seek(0)
                    err = api_log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"the API did not start: {err}")
                time.sleep(0.05)
            yield base, resources.endpoint_url, {**env, "SEGSCALE_BUCKET": resources.bucket}, resources.settings()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop.set()
        moto.join(10)
        if own_process and moto.is_alive():
            moto.kill()


def _drive(requests: int, concurrency: int, call: Callable[[int], None]) -> tuple[float, list[float]]:
    """Run ``call(i)`` for i < requests on ``concurrency`` threads; returns (requests/s, latencies in ms)."""
    latencies: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    return requests / (time.perf_counter() - started), latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _fig(
    name: str, value: float, unit: str, baseline: str, baseline_value: float, higher: bool = False, notes: str = ""
) -> Figure:
    return Figure(
        benchmark=BENCH,
        name=name,
        value=value,
        unit=unit,
        baseline_name=baseline,
        baseline_value=baseline_value,
        higher_is_better=higher,
        notes=notes,
    )


def bare_handler(settings: Any, photos: list[bytes]) -> Callable[[int], None]:
    """What an upload stores, without the API: the image to S3 (same key scheme, content type and metadata as
    the API) and its job to DynamoDB with the same conditional put. ``call(i)`` stores photo ``i``."""
    from runtime.common import keys
    from runtime.common.aws import client
    from runtime.common.jobs import JobStore, NewJob

    s3 = client("s3", settings)
    store = JobStore.from_settings(settings)
    batch_id = uuid.uuid4().hex

    def call(i: int) -> None:
        data = photos[i % len(photos)]
        job_id = uuid.uuid4().hex
        key = keys.upload_key(batch_id, job_id, "jpg")
        s3.put_object(
            Bucket=settings.bucket,
            Key=key,
            Body=data,
            ContentLength=len(data),
            ContentType="image/jpeg",
            Metadata={"job-id": job_id, "batch-id": batch_id},
        )
        store.create(
            NewJob(job_id, batch_id, key, f"photo{i}.jpg", "person", size_bytes=len(data), image_format="JPEG")
        )

    return call


def run(*, quick: bool = False) -> list[Figure]:
    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # the bare handler's clients, like moto's own tests
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    photos = make_photos()
    counts = QUICK_REQUESTS if quick else FULL_REQUESTS
    figures: list[Figure] = []
    with _stack(own_process=not quick) as (base, moto_url, env, settings):
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        with httpx.Client(base_url=base, headers={"X-Api-Key": API_KEY}, limits=limits, timeout=60) as c:

            def upload(i: int) -> None:
                r = c.post("/v1/images", files=[("file", (f"photo{i}.jpg", photos[i % len(photos)], "image/jpeg"))])
                if r.status_code != 202:
                    raise RuntimeError(f"upload {i} answered {r.status_code}: {r.text[:300]}")

            def health(i: int) -> None:
                r = c.get("/healthz")
                if r.status_code != 200:
                    raise RuntimeError(f"healthz answered {r.status_code}")

            s3 = boto3.client(
                "s3",
                endpoint_url=moto_url,
                region_name=env["SEGSCALE_REGION"],
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

            def bare_put(i: int) -> None:
                s3.put_object(Bucket=env["SEGSCALE_BUCKET"], Key=f"bare/{i}.jpg", Body=photos[i % len(photos)])

            bare = bare_handler(settings, photos)
            upload(0)  # warm: the first request reads the model cards
            health(0)
            bare(0)
            for conc in CONCURRENCY:
                n = counts[conc]
                h_rate, h_lat = _drive(n, conc, health)
                b_rate, _ = _drive(n, conc, bare)
                u_rate, u_lat = _drive(n, conc, upload)
                note = f"{n} requests of {len(photos[0]) // 1024} KB JPEGs, zero errors"
                health_name = f"GET /healthz at concurrency {conc}"
                bare_name = f"bare handler (S3 PUT + DynamoDB put, no API) at concurrency {conc}"
                figures += [
                    _fig(f"uploads/s at concurrency {conc}", u_rate, "req/s", health_name, h_rate, True, note),
                    _fig(
                        f"uploads/s vs bare handler at concurrency {conc}",
                        u_rate,
                        "req/s",
                        bare_name,
                        b_rate,
                        True,
                        "the storage floor: the same two writes on the same number of threads, no HTTP, no checks",
                    ),
                    _fig(f"upload p50 at concurrency {conc}", _pct(u_lat, 0.5), "ms", health_name, _pct(h_lat, 0.5)),
                    _fig(f"upload p99 at concurrency {conc}", _pct(u_lat, 0.99), "ms", health_name, _pct(h_lat, 0.99)),
                ]
            _, s3_lat = _drive(counts[1], 1, bare_put)
            _, u_lat = _drive(counts[1], 1, upload)
            floor = "boto3 S3 PUT of the same bytes to moto"
            note = "the storage floor: an upload also decodes the image and writes DynamoDB"
            figures.append(
                _fig(
                    "upload p50 vs bare S3 PUT, concurrency 1",
                    _pct(u_lat, 0.5),
                    "ms",
                    floor,
                    _pct(s3_lat, 0.5),
                    False,
                    note,
                )
            )
    return figures


if __name__ == "__main__":
    for f in run(quick="--quick" in sys.argv):
        ratio = f" (x{f.ratio:.2f} vs {f.baseline_name} = {f.baseline_value:.1f})" if f.ratio else ""
        print(f"{f.name}: {f.value:.1f} {f.unit}{ratio}")
