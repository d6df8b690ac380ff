"""The local moto server's fast paths (local/motofast) against stock moto, measured side by side in one run.

One child process serves the same moto state on two ports: with every fast path, and with none
(``MotoServer(fast=False)``, what ``SEGSCALE_MOTO_FAST=0`` gives). The child has a GIL of its own, so the client
threads do not slow the server down, and both servers see the same buckets and tables, so they list and query the
same data. The two are measured one after the other, alternating which goes first, ``--reps`` times; each figure
is the median, and the ratio is fast / stock (higher is better). Usage:
``python -m bench.moto_server`` (writes bench/results/moto_server.json and .md).

- mix: 8 threads, each looping PutObject + PutItem + UpdateItem + GetItem (the API's and the worker's calls).
- query: one Query page of ``--items`` job-like items.
- list: ListObjectsV2 over a ``--keys``-key prefix, 1,000 keys a page, as the S3 ingester lists.
- reconcile: the reconcile pass's status-index Query (QUEUED jobs updated before a cutoff: 10 of them) on a table of
  ``--jobs`` job-like items, half of them QUEUED.

Requests are raw HTTP (local/motofast/rawclient.py), so the client costs next to nothing and the server is what is
measured: both its throughput and its CPU time per operation (from /proc), the second being the steadier figure on
a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from bench.report import write_standalone
from local.motofast.rawclient import call, dynamodb

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
THREADS = 8
BUCKET = "bench-moto"
TABLE = "bench-moto"
JOBS_TABLE = "bench-moto-jobs"
STALE = 10  # QUEUED jobs older than the reconcile cutoff


def serve() -> None:
    """Child process: both servers, their URLs on stdout, until stdin closes."""
    import logging

    from local.motoserver import MotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    fast, stock = MotoServer(fast=True).start(), MotoServer(fast=False).start()
    print(json.dumps({"fast": fast.url, "stock": stock.url}), flush=True)
    sys.stdin.read()


def client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


def job_item(pk: str, n: int) -> dict[str, Any]:
    """About the size of a job record (runtime/common/jobs.py): strings, numbers, a map and a list."""
    return {
        "pk": {"S": pk},
        "sk": {"N": str(n)},
        "status": {"S": "SUCCEEDED"},
        "input_key": {"S": f"inputs/batch/{n:07d}.jpg"},
        "output_key": {"S": f"outputs/batch/{n:07d}.png"},
        "model": {"S": "person"},
        "file_name": {"S": f"photo {n}.jpg"},
        "created_at": {"N": "1767225600.123"},
        "updated_at": {"N": "1767225601.456"},
        "attempts": {"N": "1"},
        "worker": {"S": "worker-3f2a"},
        "mask_area": {"N": "0.4137"},
        "timings": {"M": {"decode": {"N": "3.1"}, "infer": {"N": "41.7"}, "encode": {"N": "5.2"}}},
        "tags": {"L": [{"S": "a"}, {"S": "b"}]},
        "done": {"BOOL": True},
    }


def seed_jobs(ddb: Any, pool: ThreadPoolExecutor, jobs: int) -> None:
    """A job table with the status index (runtime/common/schema.py's shape): half QUEUED, ``STALE`` of them old."""
    ddb.create_table(
        TableName=JOBS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "updated_at", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )

    def job(n: int) -> dict[str, Any]:
        item = job_item(f"job-{n:07d}", n)
        del item["sk"]
        item["status"] = {"S": "QUEUED" if n % 2 else "SUCCEEDED"}
        item["updated_at"] = {"N": str(1_767_225_600 + (n if n >= 2 * STALE else n - 10_000))}
        return item

    chunks = [range(i, min(i + 25, jobs)) for i in range(0, jobs, 25)]
    requests = [{JOBS_TABLE: [{"PutRequest": {"Item": job(n)}} for n in chunk]} for chunk in chunks]
    list(pool.map(lambda request: ddb.batch_write_item(RequestItems=request), requests))


def seed(url: str, keys: int, items: int, jobs: int) -> None:
    s3, ddb = client("s3", url), client("dynamodb", url)
    s3.create_bucket(Bucket=BUCKET)
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
    )
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: s3.put_object(Bucket=BUCKET, Key=f"photos/{n:07d}.jpg", Body=b"\xff"), range(keys)))
        list(pool.map(lambda n: s3.put_object(Bucket=BUCKET, Key=f"other/{n:05d}", Body=b"x"), range(keys // 10)))
        chunks = [range(i, min(i + 25, items)) for i in range(0, items, 25)]
        requests = [{TABLE: [{"PutRequest": {"Item": job_item("query", n)}} for n in chunk]} for chunk in chunks]
        list(pool.map(lambda request: ddb.batch_write_item(RequestItems=request), requests))
        seed_jobs(ddb, pool, jobs)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mix(url: str, rounds: int) -> int:
    """``rounds`` rounds of the mix on ``THREADS`` threads; the number of requests."""
    run = uuid.uuid4().hex[:8]

    def one(n: int) -> None:
        pk = f"mix-{run}-{n}"
        key = {"pk": {"S": pk}, "sk": {"N": "0"}}
        replies = [
            call(url, "PUT", f"/{BUCKET}/mix/{run}/{n}.png", "s3", body=b"\x89PNG" + bytes(2000)),
            dynamodb(
                url,
                "PutItem",
                {"TableName": TABLE, "Item": job_item(pk, 0), "ConditionExpression": "attribute_not_exists(pk)"},
            ),
            dynamodb(
                url,
                "UpdateItem",
                {
                    "TableName": TABLE,
                    "Key": key,
                    "UpdateExpression": "SET #s = :s, attempts = attempts + :one",
                    "ConditionExpression": "#s = :old",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":s": {"S": "RUNNING"},
                        ":one": {"N": "1"},
                        ":old": {"S": "SUCCEEDED"},
                    },
                    "ReturnValues": "ALL_NEW",
                },
            ),
            dynamodb(url, "GetItem", {"TableName": TABLE, "Key": key, "ConsistentRead": True}),
        ]
        assert all(reply.status == 200 for reply in replies), [reply.body[:200] for reply in replies]

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(rounds)))
    return 4 * rounds


def run_query(url: str, items: int, pages: int) -> int:
    for _ in range(pages):
        reply = dynamodb(
            url,
            "Query",
            {
                "TableName": TABLE,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "query"}},
                "Limit": items,
            },
        )
        assert json.loads(reply.body)["Count"] == items, reply.body[:200]
    return pages


def run_reconcile(url: str, pages: int) -> int:
    for _ in range(pages):
        reply = dynamodb(
            url,
            "Query",
            {
                "TableName": JOBS_TABLE,
                "IndexName": "by_status",
                "KeyConditionExpression": "#s = :s AND updated_at <= :cutoff",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":s": {"S": "QUEUED"}, ":cutoff": {"N": "1767225000"}},
                "Limit": 500,
            },
        )
        assert json.loads(reply.body)["Count"] == STALE, reply.body[:200]
    return pages


def run_list(url: str, keys: int) -> int:
    """One listing of the prefix, page by page as boto3's paginator asks; the number of pages."""
    token, listed, pages = None, 0, 0
    while True:
        after = f"&continuation-token={token}" if token else ""
        reply = call(url, "GET", f"/{BUCKET}?list-type=2&prefix=photos%2F&encoding-type=url{after}", "s3")
        body = reply.body.decode()
        listed += int(body.split("<KeyCount>")[1].split("<")[0])
        pages += 1
        if "<NextContinuationToken>" not in body:
            break
        token = body.split("<NextContinuationToken>")[1].split("<")[0]
    assert listed == keys, (listed, keys)
    return pages


def timed(pid: int, work: Any) -> tuple[float, float, int]:
    """(wall seconds, server CPU seconds, operations) of one measurement."""
    cpu, started = cpu_s(pid), time.perf_counter()
    operations = work()
    return time.perf_counter() - started, cpu_s(pid) - cpu, operations


def measure(keys: int, items: int, reps: int, rounds: int, pages: int, jobs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.moto_server", "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    workloads = {
        "mix": lambda url: run_mix(url, rounds),
        "query": lambda url: run_query(url, items, pages),
        "list": lambda url: run_list(url, keys),
        "reconcile": lambda url: run_reconcile(url, pages),
    }
    runs: dict[str, dict[str, list[tuple[float, float, int]]]] = {w: {"fast": [], "stock": []} for w in workloads}
    try:
        assert child.stdout is not None
        urls = json.loads(child.stdout.readline())
        started = time.perf_counter()
        seed(urls["fast"], keys, items, jobs)
        setup_s = time.perf_counter() - started
        for rep in range(reps):
            order = ("fast", "stock") if rep % 2 == 0 else ("stock", "fast")
            for name, work in workloads.items():
                for side in order:
                    runs[name][side].append(timed(child.pid, lambda work=work, side=side: work(urls[side])))
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)
    figures = {}
    for name, sides in runs.items():
        rate = {side: statistics.median(n / wall for wall, _, n in values) for side, values in sides.items()}
        cpu_ms = {side: statistics.median(1000 * cpu / n for _, cpu, n in values) for side, values in sides.items()}
        figures[name] = {
            "fast_per_s": round(rate["fast"], 2),
            "stock_per_s": round(rate["stock"], 2),
            "ratio": round(rate["fast"] / rate["stock"], 2),
            "fast_cpu_ms": round(cpu_ms["fast"], 2),
            "stock_cpu_ms": round(cpu_ms["stock"], 2),
            "cpu_ratio": round(cpu_ms["stock"] / max(cpu_ms["fast"], 1e-9), 2),
            "samples_per_s": {side: [round(n / wall, 2) for wall, _, n in values] for side, values in sides.items()},
        }
    return {"keys": keys, "items": items, "jobs": jobs, "reps": reps, "setup_s": round(setup_s, 1), "figures": figures}


UNITS = {
    "mix": "requests, 8 threads",
    "query": "Query pages",
    "list": "ListObjectsV2 pages",
    "reconcile": "status-index Queries",
}


def markdown(r: dict[str, Any]) -> str:
    rows = "".join(
        f"| {name} ({UNITS[name]}) | {f['stock_per_s']:,} | {f['fast_per_s']:,} | **{f['ratio']}** | "
        f"{f['stock_cpu_ms']:,} | {f['fast_cpu_ms']:,} | **{f['cpu_ratio']}** |\n"
        for name, f in r["figures"].items()
    )
    return (
        f"# Local moto server: fast paths against stock moto ({r['reps']} repetition(s), same process, same data)\n\n"
        f"Query page: {r['items']:,} items; listing: a {r['keys']:,}-key prefix, 1,000 keys a page; reconcile: the "
        f"status-index Query for {STALE} stale QUEUED jobs in a {r.get('jobs', 0):,}-job table. Throughput: "
        "operations per second of wall time (ratio fast / stock); server CPU: milliseconds of the server process's "
        "CPU per operation (ratio stock / fast). Higher ratios are better.\n\n"
        "| workload | stock /s (baseline) | fast /s | ratio | stock CPU ms/op | fast CPU ms/op | CPU ratio |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        f"{rows}\nSeeding the data took {r['setup_s']} s.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.moto_server", description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000, help="keys under the listed prefix")
    parser.add_argument("--items", type=int, default=1_000, help="items in the queried page")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=300, help="rounds of the 4-request mix per measurement")
    parser.add_argument("--pages", type=int, default=5, help="Query pages per measurement")
    parser.add_argument("--jobs", type=int, default=10_000, help="items in the job table of the reconcile Query")
    parser.add_argument("--out", type=Path, default=RESULTS / "moto_server")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    result = measure(args.keys, args.items, args.reps, args.rounds, args.pages, args.jobs)
    write_standalone(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
