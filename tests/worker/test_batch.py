"""Batch processing against the moto server over HTTP: claims, results, failures, duplicates, leases."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from runtime.common import keys, logs, metrics
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.worker.batch import BatchRunner, _LeaseKeeper, run_batch
from runtime.worker.models import ModelRegistry
from tests.worker.helpers import CallLog, emf_lines, encode, png_bomb, read_png, red_square, submit


@pytest.fixture(scope="module")
def registry(models_dir: Path) -> ModelRegistry:
    return ModelRegistry(models_dir, threads=1)


def test_batch_writes_measurements_masks_and_metrics(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    a = submit(store, s3, worker_settings, encode(red_square(128, (32, 32, 64, 64))), model="red", mm_per_pixel=0.5)
    b = submit(store, s3, worker_settings, encode(red_square(100, (10, 20, 30, 40))), model="red-aspect")
    c = submit(store, s3, worker_settings, encode(red_square(64, (8, 8, 16, 16)), "JPEG", quality=95), model="blobs")
    out = io.StringIO()
    report = run_batch(worker_settings, [a, b, c], registry=registry, metrics_stream=out, worker_id="w1")
    assert report.ok and sorted(report.succeeded) == sorted([a, b, c]) and not report.failed

    job = store.get(a)
    assert job is not None and job["status"] == "SUCCEEDED" and "lease_owner" not in job
    red = job["result"]["classes"]["red"]
    assert job["result"]["model"] == "red" and (job["result"]["width"], job["result"]["height"]) == (128, 128)
    assert abs(red["pixels"] - 64 * 64) <= 4 * 64 * 2  # 64x64 image grid: edges may move by a pixel or two
    assert red["components"] == 1 and red["bboxes"][0][:2] in ([32, 32], [31, 31], [30, 30])
    assert red["area_mm2"] == pytest.approx(red["pixels"] * 0.25)
    assert set(job["result"]["timings_ms"]) >= {"download", "decode", "inference", "postprocess", "upload", "total"}
    mask = read_png(s3, worker_settings.bucket, job["mask_key"])
    assert job["mask_key"] == keys.mask_key(job["batch_id"], a) and mask.mode == "P" and mask.size == (128, 128)
    labels = np.asarray(mask)
    assert labels[64, 64] == 1 and labels[5, 5] == 0 and tuple(mask.getpalette()[3:6]) == (255, 0, 0)
    overlay = read_png(s3, worker_settings.bucket, job["overlay_key"])
    assert job["overlay_key"] == keys.overlay_key(job["batch_id"], a) and overlay.format == "JPEG"
    overlay_rgb = np.asarray(overlay.convert("RGB"))
    assert overlay_rgb.shape == (128, 128, 3) and overlay_rgb[64, 64, 0] > overlay_rgb[5, 5, 0]
    stored = {
        k: s3.head_object(Bucket=worker_settings.bucket, Key=job[k])["ContentType"] for k in ("mask_key", "overlay_key")
    }
    assert stored == {"mask_key": "image/png", "overlay_key": "image/jpeg"}

    exact = store.get(b)["result"]["classes"]["red"]  # keep_aspect + size rule on a 100x100 image
    assert abs(exact["pixels"] - 30 * 40) <= 2 * (30 + 40) and exact["bboxes"][0][2:] in ([30, 40], [31, 41])
    blobs = store.get(c)["result"]["classes"]["object"]
    assert blobs["components"] == 1 and abs(blobs["pixels"] - 256) <= 40

    docs = emf_lines(out.getvalue())
    names = [m["Name"] for d in docs for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names.count(metrics.IMAGES_PROCESSED) == 3 and names.count(metrics.BATCH_SIZE) == 1
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Segscale" for d in docs)
    assert all(set(metrics.UNITS) >= {m["Name"] for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]} for d in docs)


def _cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(red_square(48, (8, 8, 16, 16))).convert("CMYK"), "JPEG")


def _gif() -> bytes:
    frames = [Image.fromarray(red_square(40, (0, 0, 20, 20))), Image.new("RGB", (40, 40), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    return buf.getvalue()


def _truncated() -> bytes:
    data = encode(np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8), "JPEG")
    return data[: len(data) // 2]


BAD_INPUTS: dict[str, tuple[Any, str, str | None]] = {
    # name: (bytes factory, final status, error class)
    "corrupt": (lambda: b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, "FAILED", "corrupt_image"),
    "truncated": (_truncated, "FAILED", "corrupt_image"),
    "zero_bytes": (lambda: b"", "FAILED", "empty_file"),
    "not_an_image": (lambda: b"hello, I am a text file\n" * 10, "FAILED", "unsupported_media_type"),
    "bomb": (png_bomb, "FAILED", "too_many_pixels"),
    "one_pixel": (lambda: encode(np.full((1, 1, 3), 200, np.uint8)), "SUCCEEDED", None),
    "strip_20000x20": (lambda: encode(red_square(20, (0, 0, 20, 20)).repeat(1000, axis=1)), "SUCCEEDED", None),
    "png_16_bit": (lambda: encode(Image.fromarray(np.full((20, 30), 40000, np.uint16))), "SUCCEEDED", None),
    "cmyk_jpeg": (_cmyk_jpeg, "SUCCEEDED", None),
    "animated_gif": (_gif, "SUCCEEDED", None),
}


def test_bad_images_fail_cleanly_and_the_batch_completes(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    ids = {name: submit(store, s3, worker_settings, f(), model="red-aspect") for name, (f, _, _) in BAD_INPUTS.items()}
    unknown_model = submit(store, s3, worker_settings, encode(red_square(32, (0, 0, 8, 8))), model="nope")
    good = submit(store, s3, worker_settings, encode(red_square(64, (0, 0, 32, 32))), model="red")
    out = io.StringIO()
    report = run_batch(worker_settings, [*ids.values(), unknown_model, good], registry=registry, metrics_stream=out)
    assert report.ok
    for name, (_, status, error_class) in BAD_INPUTS.items():
        job = store.get(ids[name])
        assert job is not None and job["status"] == status, (name, job)
        if error_class:
            assert job["error_class"] == error_class and len(job["error"]) > 10, name
    strip = store.get(ids["strip_20000x20"])["result"]
    assert (strip["width"], strip["height"]) == (20000, 20) and strip["classes"]["red"]["fraction"] > 0.9
    failed = store.get(unknown_model)
    assert failed["status"] == "FAILED" and failed["error_class"] == "unknown_model" and "red" in failed["error"]
    assert store.get(good)["status"] == "SUCCEEDED"
    by_reason = [d[metrics.REASON_DIMENSION] for d in emf_lines(out.getvalue()) if metrics.REASON_DIMENSION in d]
    expected = [c for _, s, c in BAD_INPUTS.values() if s == "FAILED"] + ["unknown_model"]
    assert sorted(by_reason) == sorted(expected)
    assert all(d[metrics.IMAGES_FAILED] == 1 for d in emf_lines(out.getvalue()) if metrics.IMAGES_FAILED in d)


def test_duplicate_delivery_yields_one_result_per_job(worker_settings: Settings, models_dir: Path) -> None:
    store = JobStore.from_settings(worker_settings)
    s3 = client("s3", worker_settings)
    ids = [submit(store, s3, worker_settings, encode(red_square(64, (i, i, 16, 16))), model="red") for i in range(12)]
    reports: list[Any] = []
    barrier = threading.Barrier(2)

    def deliver(worker: str) -> None:
        registry = ModelRegistry(models_dir, threads=1)  # each delivery is its own worker task
        barrier.wait()  # both start claiming the same ids at the same moment
        reports.append(
            run_batch(worker_settings, ids, registry=registry, worker_id=worker, metrics_stream=io.StringIO())
        )

    threads = [threading.Thread(target=deliver, args=(f"w{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(reports) == 2 and all(r.ok for r in reports)
    assert sorted(j for r in reports for j in r.succeeded) == sorted(ids)  # each job exactly once...
    assert sorted(j for r in reports for j in r.skipped) == sorted(ids)  # ...and skipped by the other delivery
    for job_id in ids:
        job = store.get(job_id)
        assert job["status"] == "SUCCEEDED" and job["attempts"] == 1


def test_lease_held_by_another_worker_is_respected(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    theirs = submit(store, s3, worker_settings, encode(red_square(32, (0, 0, 8, 8))), model="red")
    done = submit(store, s3, worker_settings, encode(red_square(32, (0, 0, 8, 8))), model="red")
    mine = submit(store, s3, worker_settings, encode(red_square(32, (0, 0, 8, 8))), model="red")
    store.claim(theirs, "other-worker")
    store.claim(done, "other-worker")
    store.fail(done, "already failed elsewhere", error_class="corrupt_image", worker_id="other-worker")
    missing = "0" * 32
    report = run_batch(worker_settings, [theirs, done, missing, mine], registry=registry, metrics_stream=io.StringIO())
    assert report.ok and report.succeeded == [mine] and sorted(report.skipped) == sorted([theirs, done, missing])
    job = store.get(theirs)
    assert job["status"] == "RUNNING" and job["lease_owner"] == "other-worker" and "result" not in job
    assert store.get(done)["error"] == "already failed elsewhere"
    assert store.get(missing) is None  # a skipped id is not created by the worker


def test_transient_storage_error_releases_and_requeues(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    job_id = submit(store, s3, worker_settings, encode(red_square(32, (0, 0, 8, 8))), model="red")
    broken = worker_settings.model_copy(update={"bucket": worker_settings.bucket + "-gone"})  # NoSuchBucket
    report = run_batch(broken, [job_id], registry=registry, metrics_stream=io.StringIO())
    assert report.ok and report.released == [job_id] and report.requeued == [job_id]
    job = store.get(job_id)
    assert job["status"] == "QUEUED" and job["attempts"] == 1 and "NoSuchBucket" in job["last_error"]
    assert job["enqueued_at"] > 0
    sqs = client("sqs", worker_settings)
    bodies = [
        m["Body"] for m in sqs.receive_message(QueueUrl=worker_settings.queue_url, MaxNumberOfMessages=10)["Messages"]
    ]
    assert any(job_id in b for b in bodies)
    # the retry succeeds against the real bucket
    assert run_batch(worker_settings, [job_id], registry=registry, metrics_stream=io.StringIO()).succeeded == [job_id]


def test_lease_keeper_renews_held_jobs_and_notices_a_lost_lease(
    worker_settings: Settings, store: JobStore, s3: Any
) -> None:
    kept = submit(store, s3, worker_settings, encode(red_square(8, (0, 0, 2, 2))), model="red")
    taken = submit(store, s3, worker_settings, encode(red_square(8, (0, 0, 2, 2))), model="red")
    first = {j: store.claim(j, "w1")["lease_expires_at"] for j in (kept, taken)}
    keeper = _LeaseKeeper(store, "w1", interval_s=0.3)
    keeper.add(kept)
    keeper.add(taken)
    store.fail(taken, "reconciled elsewhere", error_class="gave_up")  # the job is no longer ours
    keeper.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            taken not in keeper.lost or store.get(kept)["lease_expires_at"] <= first[kept]
        ):
            time.sleep(0.1)
    finally:
        keeper.stop()
    assert store.get(kept)["lease_expires_at"] > first[kept]
    assert keeper.lost == {taken} and keeper.held == {kept}


def test_a_job_is_claimed_only_when_its_processing_starts(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    """Stopped after its first result, the worker has downloaded jobs ahead, but only the jobs it started
    processing were claimed (and charged an attempt); the rest go back to the queue untouched."""
    ids = [submit(store, s3, worker_settings, encode(red_square(64, (8, 8, 32, 32))), model="red") for _ in range(30)]
    bad = submit(store, s3, worker_settings, _truncated(), model="red")
    stop = threading.Event()
    ddb = CallLog(
        client("dynamodb", worker_settings),
        hook=lambda op, kw: (
            stop.set()
            if ":s0" in kw.get("ExpressionAttributeValues", {})
            and kw["ExpressionAttributeValues"][":s0"].get("S") == "SUCCEEDED"
            else None
        ),
    )
    s3_log = CallLog(s3)
    runner = BatchRunner(
        worker_settings,
        registry=registry,
        store=JobStore.from_settings(worker_settings, ddb),
        s3=s3_log,
        sqs=client("sqs", worker_settings),
        worker_id="w-stop",
        stop=stop,
        metrics_stream=io.StringIO(),
    )
    report = runner.run([bad, *ids])
    assert report.interrupted and report.failed == [bad] and report.succeeded
    jobs = store.get_many([bad, *ids])
    claimed = {j for j, status in ddb.transitions() if status == "RUNNING"}
    assert claimed == {bad, *report.succeeded}  # every claimed job was finished: none released, none charged idle
    back = [j for j in ids if j not in claimed]
    assert sorted(report.requeued) == sorted(back) and back
    assert all(jobs[j]["status"] == "QUEUED" and jobs[j]["attempts"] == 0 for j in back)
    downloaded = {job for op, job, _ in s3_log.calls if op == "get_object"}
    assert downloaded & set(back), "the prefetch downloaded jobs ahead without claiming them"
    assert all(jobs[j]["attempts"] == 1 and "decode" in jobs[j]["result"]["timings_ms"] for j in report.succeeded)


def test_a_crash_suspect_is_processed_alone(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    """A job whose worker vanished while processing it is claimed only once nothing else is in flight, and the
    next job only once its result is written: if it kills this worker too, it costs no other job an attempt."""
    data = encode(red_square(64, (8, 8, 32, 32)))
    ids = [submit(store, s3, worker_settings, data, model="red") for _ in range(12)]
    suspect = ids[6]
    store.claim(suspect, "w-vanished")
    later = JobStore.from_settings(worker_settings)
    later.clock = lambda: 10**15  # the reconciler, after the lease expired
    assert later.release(suspect, None, "lease expired") == "QUEUED"
    assert store.get(suspect)["lost_leases"] == 1
    ddb = CallLog(client("dynamodb", worker_settings))
    report = run_batch(
        worker_settings,
        ids,
        registry=registry,
        store=JobStore.from_settings(worker_settings, ddb),
        metrics_stream=io.StringIO(),
    )
    assert sorted(report.succeeded) == sorted(ids) and report.suspects == 1
    order = ddb.transitions()
    start = order.index((suspect, "RUNNING"))
    end = order.index((suspect, "SUCCEEDED"))
    assert end == start + 1, order[start : end + 1]  # nothing else claimed or finished while it ran
    before = order[:start]
    assert {j for j, st in before if st == "RUNNING"} == {j for j, st in before if st == "SUCCEEDED"}
    assert store.get(suspect)["attempts"] == 2 and all(store.get(j)["attempts"] == 1 for j in ids if j != suspect)


def test_unusable_models_fail_their_jobs_with_the_reason(
    worker_settings: Settings, store: JobStore, s3: Any, models_dir: Path
) -> None:
    registry = ModelRegistry(models_dir, threads=1)
    assert "broken" in registry.broken and "red" in registry.cards  # one bad card does not disable the rest
    data = encode(red_square(32, (0, 0, 8, 8)))
    tampered = submit(store, s3, worker_settings, data, model="red-tampered")
    broken = submit(store, s3, worker_settings, data, model="broken")
    fine = submit(store, s3, worker_settings, data, model="red")
    report = run_batch(worker_settings, [tampered, broken, fine], registry=registry, metrics_stream=io.StringIO())
    assert report.ok and report.succeeded == [fine] and sorted(report.failed) == sorted([tampered, broken])
    t, b = store.get(tampered), store.get(broken)
    assert t["error_class"] == "model_error" and "sha256" in t["error"]
    assert b["error_class"] == "model_error" and "misconfigured" in b["error"] and "license" in b["error"]


def test_every_line_about_a_job_carries_its_job_id(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    """The worker's JSON log lines name the job they are about (``logs.bind``), on whichever thread wrote them:
    prefetch and results on the I/O pool, claim and failure on the inference thread, skips on the caller's."""
    good = submit(store, s3, worker_settings, encode(red_square(64, (0, 0, 32, 32))), model="red")
    corrupt = submit(store, s3, worker_settings, b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, model="red")
    unknown = submit(store, s3, worker_settings, encode(red_square(32, (0, 0, 8, 8))), model="nope")
    done = submit(store, s3, worker_settings, encode(red_square(32, (0, 0, 8, 8))), model="red")
    store.fail(done, "refused earlier", error_class="test")
    ids = [good, corrupt, unknown, done]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonLines())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        report = run_batch(worker_settings, ids, registry=registry, metrics_stream=io.StringIO())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert report.ok and report.succeeded == [good] and report.skipped == [done]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    about = {job_id: [d for d in lines if job_id in d["message"]] for job_id in ids}
    assert all(about[j] for j in (corrupt, unknown, done)), about  # each is logged: failed, failed, skipped
    for job_id, docs in about.items():
        assert all(d.get("job_id") == job_id for d in docs), docs
    bound = {d["job_id"] for d in lines if "job_id" in d}
    assert bound <= set(ids) and {corrupt, unknown, done} <= bound
    batch_ids = {d["job_id"]: d.get("batch_id") for d in lines if "job_id" in d and d["job_id"] != done}
    assert all(batch_ids[j] == store.get(j)["batch_id"] for j in batch_ids)
