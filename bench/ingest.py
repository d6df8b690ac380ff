"""S3 ingestion rate: a prefix of N small objects becomes N jobs, against a bare ``BatchWriteItem`` loop over the
same keys in the same run (docs/ingestion.md).

The ingester (``runtime/results/ingest/run.py``) lists the prefix a page of 1,000 keys at a time, builds the full
job items, writes them with ``BatchWriteItem`` (8 calls in flight), sends their ids to the jobs queue and
checkpoints the page on the batch record. The baseline is the floor of that work: the same keys, already in
memory, written as minimal items (key, batch, input key) with ``BatchWriteItem`` on the same 8 threads, nothing
else. ingest rate / bare rate is the share of the floor the ingester keeps (goal: at least 0.7).

Two more baselines say where the rest goes: the bare loop after listing the prefix (what S3's listing adds), and
the bare loop writing, for the same keys, the very job items the ingester writes (``new_job_item``: 16
attributes where the minimal item has 3), built before the clock starts. The last one is the floor of ingestion
itself, since a job must be recorded whole; ingest rate / that rate is the ingester's own overhead (listing,
enqueueing, checkpoints, building the items).

Both run against the local stack's two moto servers on loopback (S3 and SQS on one, DynamoDB on its own, which
serves its requests one at a time, as D6 explains), alternating ``--reps`` times; the figure is the median of
each, and the order of the runs is reversed every other repetition (``run_order``).
Usage: ``python -m bench.ingest --objects 100000`` (writes bench/results/ingest.json and .md).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.report import write_standalone
from local.dev import start_moto
from local.procs import free_port, stop
from local.resources import create_resources
from runtime.common.aws import client
from runtime.common.batches import BatchStore
from runtime.common.jobs import BATCH_WRITE_MAX, JobStatus, JobStore, NewJob, new_job_item, now_ms, serialize
from runtime.common.settings import Settings
from runtime.common.sources import job_id_for
from runtime.results.ingest.run import VIA_LISTING, WRITERS, Ingester

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "bench-ingest-source"


BODY = b"\xff\xd8\xff"
ETAG = hashlib.md5(BODY).hexdigest()  # S3's ETag of a single-part object, as the ingester keeps it (unquoted)
SAME_EXCEPT = frozenset({"pk", "job_id", "batch_id", "created_at", "updated_at", "enqueued_at"})


def put_objects(settings: Settings, count: int) -> list[str]:
    s3 = client("s3", settings)
    s3.create_bucket(Bucket=BUCKET)
    keys = [f"photos/{i:07d}.jpg" for i in range(count)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=BODY), keys))
    return keys


def run_ingest(settings: Settings) -> tuple[float, int, str]:
    batch_id = uuid.uuid4().hex
    # A fresh jobs queue per run: a deep queue left by the previous run would slow moto's SQS for this one.
    queue = client("sqs", settings).create_queue(QueueName=f"bench-{batch_id[:12]}")["QueueUrl"]
    settings = settings.model_copy(update={"queue_url": queue})
    BatchStore.from_settings(settings).create_ingesting(
        batch_id, source=f"s3://{BUCKET}/photos/", source_kind="prefix", spec={"model": "person"}
    )
    started = time.perf_counter()
    outcome = Ingester(settings).run(batch_id)
    elapsed = time.perf_counter() - started
    assert outcome.finished, outcome
    return elapsed, outcome.jobs, batch_id


def assert_same_items(settings: Settings, batch_id: str, key: str) -> None:
    """The third baseline writes what the ingester wrote for ``key``: the same attributes, the same values but for
    the ids and times."""
    written = JobStore.from_settings(settings).get(job_id_for(batch_id, BUCKET, key, ETAG))
    assert written is not None, key
    ours = serialize(job_items([key])[key])
    theirs = serialize(dict(written))
    assert set(ours) == set(theirs), set(ours) ^ set(theirs)
    assert {k: v for k, v in ours.items() if k not in SAME_EXCEPT} == {
        k: v for k, v in theirs.items() if k not in SAME_EXCEPT
    }


def job_items(keys: list[str]) -> dict[str, dict[str, Any]]:
    """The items the ingester writes for these keys (a new batch's QUEUED jobs, promised to the queue), by key."""
    batch_id, now = uuid.uuid4().hex, now_ms()
    items = {}
    for key in keys:
        job = NewJob(
            job_id=job_id_for(batch_id, BUCKET, key, ETAG),
            batch_id=batch_id,
            input_key=key,
            input_bucket=BUCKET,
            input_etag=ETAG,
            via=VIA_LISTING,
            file_name=key.rsplit("/", 1)[-1],
            model="person",
            size_bytes=len(BODY),
        )
        items[key] = new_job_item(job, JobStatus.QUEUED, now, enqueued=True)
    return items


def run_bare(
    settings: Settings, keys: list[str], *, list_first: bool = False, items: dict[str, dict[str, Any]] | None = None
) -> float:
    """The bare loop; ``list_first``: the keys are listed from the prefix first (the floor that includes S3's
    listing: stock moto walks and sorts the whole bucket for every page, local/motofast lists from a sorted index);
    ``items``: the item written for each key (default: a minimal three-attribute one)."""
    ddb, batch_id = client("dynamodb", settings), uuid.uuid4().hex

    def item(key: str) -> dict[str, Any]:
        return items[key] if items is not None else {"pk": f"bare#{batch_id}{key}", "batch": batch_id, "key": key}

    def write(chunk: list[str]) -> None:
        request = {settings.table: [{"PutRequest": {"Item": serialize(item(k))}} for k in chunk]}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    started = time.perf_counter()
    if list_first:
        paginator = client("s3", settings).get_paginator("list_objects_v2")
        keys = [o["Key"] for page in paginator.paginate(Bucket=BUCKET, Prefix="photos/") for o in page["Contents"]]
    chunks = [keys[i : i + BATCH_WRITE_MAX] for i in range(0, len(keys), BATCH_WRITE_MAX)]
    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, chunks))
    return time.perf_counter() - started


RUNS = ("bare", "listed", "same", "ingest")


def run_order(rep: int) -> tuple[str, ...]:
    """The runs of one repetition, reversed every other one: each run adds its items to the one table, and a later
    run writes into a bigger table (moto's store, and its collector's work, grow with it), so a fixed order would
    always hand the ingester the biggest table."""
    return RUNS if rep % 2 == 0 else RUNS[::-1]


def measure(objects: int, reps: int) -> dict[str, Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto accepts any credentials
        os.environ.setdefault(name, "testing")
    # As the local stack runs them (local/dev.py): S3 and SQS on one moto server, DynamoDB on its own, each in its
    # own process, so neither the servers nor this process's threads share an interpreter.
    ports = {"s3": free_port(), "dynamodb": free_port()}
    with tempfile.TemporaryDirectory() as logs:
        servers = [start_moto(port, log_dir=Path(logs), timeout_s=60, log_name=f"{n}.log") for n, port in ports.items()]
        try:
            return _measure({n: f"http://127.0.0.1:{port}" for n, port in ports.items()}, objects, reps)
        finally:
            for server in servers:
                stop(server)


def _measure(urls: dict[str, str], objects: int, reps: int) -> dict[str, Any]:
    resources = create_resources(urls["s3"], prefix=f"b{uuid.uuid4().hex[:8]}", dynamodb_endpoint_url=urls["dynamodb"])
    settings = resources.settings(ingest_sources=f"s3://{BUCKET}/photos/")
    t0 = time.perf_counter()
    keys = put_objects(settings, objects)
    setup_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    orders = []
    for rep in range(reps):
        order = run_order(rep)
        orders.append(order)
        for name in order:
            if name == "ingest":
                elapsed, jobs, batch_id = run_ingest(settings)
                assert jobs == objects, (jobs, objects)
                assert_same_items(settings, batch_id, keys[-1])
            elif name == "same":
                elapsed = run_bare(settings, keys, items=job_items(keys))
            else:
                elapsed = run_bare(settings, keys, list_first=name == "listed")
            times[name].append(elapsed)
    bare, listed, same, ingest = (times[name] for name in RUNS)
    bare_rate = objects / statistics.median(bare)
    ingest_rate = objects / statistics.median(ingest)
    return {
        "objects": objects,
        "reps": reps,
        "orders": orders,
        "setup_s": round(setup_s, 1),
        "bare_s": [round(x, 2) for x in bare],
        "list_and_bare_s": [round(x, 2) for x in listed],
        "ratio_to_list_and_bare": round(statistics.median(listed) / statistics.median(ingest), 3),
        "same_items_s": [round(x, 2) for x in same],
        "ratio_to_same_items": round(statistics.median(same) / statistics.median(ingest), 3),
        "ingest_s": [round(x, 2) for x in ingest],
        "bare_items_per_s": round(bare_rate),
        "ingest_jobs_per_s": round(ingest_rate),
        "ratio": round(ingest_rate / bare_rate, 3),
        "goal": 0.7,
    }


def markdown(r: dict[str, Any]) -> str:
    return (
        f"# S3 ingestion: {r['objects']:,} objects, {r['reps']} repetition(s), same moto servers\n\n"
        "| run | median s | rate /s |\n| --- | --- | --- |\n"
        f"| bare BatchWriteItem loop (baseline) | {statistics.median(r['bare_s']):.2f} | {r['bare_items_per_s']:,} |\n"
        f"| list the prefix, then the bare loop (second baseline) | {statistics.median(r['list_and_bare_s']):.2f} | "
        f"{round(r['objects'] / statistics.median(r['list_and_bare_s'])):,} |\n"
        f"| the bare loop writing the ingester's job items (third baseline) | "
        f"{statistics.median(r['same_items_s']):.2f} | "
        f"{round(r['objects'] / statistics.median(r['same_items_s'])):,} |\n"
        f"| ingester (list, write, enqueue, checkpoint) | {statistics.median(r['ingest_s']):.2f} | "
        f"{r['ingest_jobs_per_s']:,} |\n\n"
        f"ratio (ingest rate / bare rate): **{r['ratio']}** (goal >= {r['goal']}); against list + bare loop: "
        f"**{r['ratio_to_list_and_bare']}**; against the bare loop writing the same job items: "
        f"**{r['ratio_to_same_items']}**. Each run: "
        f"bare {r['bare_s']} s, list + bare {r['list_and_bare_s']} s, same items {r['same_items_s']} s, "
        f"ingest {r['ingest_s']} s. Order of the runs in each repetition: "
        + "; ".join(", ".join(order) for order in r.get("orders", []))
        + f". Creating the objects took {r['setup_s']} s.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest")
    args = parser.parse_args(argv)
    result = measure(args.objects, args.reps)
    write_standalone(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
