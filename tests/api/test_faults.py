"""D7a with real failures: image to S3, then job to DynamoDB, then 202, then SQS. No orphan job (a job
whose object is missing), no lost job (a 202 whose job is not in DynamoDB), 503 when storage fails."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from fastapi.testclient import TestClient

from runtime.api.main import create_app
from runtime.common.aws import client
from runtime.common.settings import Settings
from runtime.results.reconcile import reconcile_once
from tests.api.helpers import AUTH, image_bytes, post_images, stored


class Recording:
    """Wraps a real boto3 client (not our code): logs each call, and the Nth call of ``fail_op`` raises as if the
    endpoint were unreachable."""

    def __init__(self, real: Any, name: str, log: list[str], fail_op: str | None = None, fail_on: int = 1) -> None:
        self._real, self._name, self._log = real, name, log
        self._fail_op, self._fail_on, self._seen = fail_op, fail_on, 0
        self._lock = threading.Lock()  # the API writes in parallel

    def __getattr__(self, op: str) -> Any:
        method = getattr(self._real, op)
        if not callable(method) or op.startswith("_") or op in ("generate_presigned_url", "exceptions", "meta"):
            return method

        def call(**kwargs: Any) -> Any:
            with self._lock:
                self._log.append(f"{self._name}.{op}")
                fail = False
                if op == self._fail_op:
                    self._seen += 1
                    fail = self._seen == self._fail_on
            if fail:
                raise EndpointConnectionError(endpoint_url=f"https://{self._name}.invalid")
            return method(**kwargs)

        return call


def _app(settings: Settings, log: list[str], **faults: tuple[str, int]) -> TestClient:
    clients = {}
    for name in ("s3", "dynamodb", "sqs"):
        op, n = faults.get(name, (None, 1))
        clients[name] = Recording(client(name, settings), name, log, op, n)
    return TestClient(create_app(settings, **clients), headers=AUTH)


def _assert_no_orphans(settings: Settings) -> dict[str, Any]:
    s = stored(settings)
    objects = set(s["objects"])
    for job in s["jobs"].values():
        assert job["input_key"]["S"] in objects, "a job points to a missing object"
    return s


def test_order_is_s3_then_dynamodb_then_sqs(api_settings: Settings) -> None:
    log: list[str] = []
    with _app(api_settings, log) as c:
        r = post_images(c, image_bytes(seed=1), image_bytes(seed=2))
    assert r.status_code == 202
    writes = [e for e in log if e in ("s3.put_object", "dynamodb.put_item", "sqs.send_message")]
    # the new batch's record counts the jobs first (one put: the request drew its id), then images, then jobs
    assert writes == ["dynamodb.put_item"] + ["s3.put_object"] * 2 + ["dynamodb.put_item"] * 2 + ["sqs.send_message"]
    after_images = log[log.index("s3.put_object") :]
    assert "dynamodb.update_item" not in after_images  # the jobs were written promised to the queue: no write after
    s = _assert_no_orphans(api_settings)
    assert len(s["jobs"]) == 2 and len(s["messages"]) == 1
    assert all(j["enqueued_at"] == j["created_at"] and j["enqueue_count"]["N"] == "1" for j in s["jobs"].values())


@pytest.mark.parametrize("fail_on", [1, 2])
def test_s3_failure_is_503_and_leaves_nothing(api_settings: Settings, fail_on: int) -> None:
    log: list[str] = []
    with _app(api_settings, log, s3=("put_object", fail_on)) as c:
        r = post_images(c, image_bytes(seed=1), image_bytes(seed=2))
    assert r.status_code == 503 and r.json()["type"].endswith("storage_unavailable") and r.headers["retry-after"]
    s = stored(api_settings)
    assert s["objects"] == [] and s["items"] == [] and s["messages"] == []
    assert log.count("dynamodb.put_item") == 1  # the new batch's record alone (taken back): no job was written


def test_missing_bucket_is_503_and_creates_no_job(api_settings: Settings) -> None:
    broken = api_settings.model_copy(update={"bucket": "no-such-bucket-anywhere"})
    with TestClient(create_app(broken), headers=AUTH) as c:
        r = post_images(c, image_bytes())
    assert r.status_code == 503
    assert stored(api_settings)["items"] == []


def test_dynamodb_failure_after_s3_is_503_without_orphans_or_runnable_jobs(api_settings: Settings) -> None:
    log: list[str] = []
    with _app(api_settings, log, dynamodb=("put_item", 2)) as c:
        r = post_images(c, image_bytes(seed=1), image_bytes(seed=2), image_bytes(seed=3))
    assert r.status_code == 503
    s = _assert_no_orphans(api_settings)
    # Jobs written before the failure are FAILED (never processed); the object of the job that was never written
    # is removed. (Writes run in parallel, so the second call is one of the three, not necessarily the second.)
    assert [j["status"]["S"] for j in s["jobs"].values()] == ["FAILED", "FAILED"]
    assert all(j["error_class"]["S"] == "not_accepted" for j in s["jobs"].values())
    assert len(s["objects"]) == 2 and s["messages"] == []
    assert "sqs.send_message" not in log


def test_missing_table_is_503_and_removes_the_objects(api_settings: Settings) -> None:
    broken = api_settings.model_copy(update={"table": "no-such-table"})
    with TestClient(create_app(broken), headers=AUTH) as c:
        r = post_images(c, image_bytes(seed=1), image_bytes(seed=2))
    assert r.status_code == 503
    s = stored(api_settings)
    assert s["objects"] == [] and s["items"] == [] and s["messages"] == []


@pytest.mark.parametrize("how", ["closed-port", "missing-queue"])
def test_sqs_failure_still_202_and_jobs_wait_for_the_reconciler(api_settings: Settings, how: str) -> None:
    log: list[str] = []
    if how == "closed-port":
        app = _app(api_settings, log, sqs=("send_message", 1))
    else:
        missing = api_settings.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
        app = TestClient(create_app(api_settings.model_copy(update={"queue_url": missing})), headers=AUTH)
    with app as c:
        r = post_images(c, image_bytes(seed=1), image_bytes(seed=2))
    assert r.status_code == 202
    s = _assert_no_orphans(api_settings)
    assert s["messages"] == []
    ids = {j["job_id"] for j in r.json()["jobs"]}
    assert set(s["jobs"]) == ids  # nothing lost: every promised job is in the table...
    for job in s["jobs"].values():
        assert job["status"]["S"] == "QUEUED" and "enqueued_at" not in job  # ...where the reconciler finds it


def test_retry_after_503_with_the_same_idempotency_key_is_accepted(api_settings: Settings) -> None:
    log: list[str] = []
    with _app(api_settings, log, dynamodb=("put_item", 1)) as c:
        r1 = post_images(c, image_bytes(), headers={"Idempotency-Key": "retry-me"})
        r2 = post_images(c, image_bytes(), headers={"Idempotency-Key": "retry-me"})
        r3 = post_images(c, image_bytes(), headers={"Idempotency-Key": "retry-me"})
    assert r1.status_code == 503 and r2.status_code == 202 and r3.json() == r2.json()
    s = _assert_no_orphans(api_settings)
    assert [j["status"]["S"] for j in s["jobs"].values()] == ["QUEUED"] and len(s["messages"]) == 1


def test_dynamodb_down_on_reads_is_503(api_settings: Settings) -> None:
    log: list[str] = []
    with _app(api_settings, log, dynamodb=("get_item", 1)) as c:
        r = c.get("/v1/jobs/" + "a" * 32)
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"


class TwinArrives:
    """A real DynamoDB client; on the first idempotency lookup, a twin request with the same key runs to the end
    (through the same app) before the lookup's answer (nothing found) is returned: the race, made deterministic."""

    def __init__(self, real: Any, twin: Any) -> None:
        self._real, self._twin, self.fired = real, twin, False

    def __getattr__(self, op: str) -> Any:
        return getattr(self._real, op)

    def get_item(self, **kwargs: Any) -> Any:
        out = self._real.get_item(**kwargs)
        if not self.fired and kwargs["Key"]["pk"]["S"].startswith("idem#"):
            self.fired = True
            self._twin()
        return out


def test_concurrent_twin_with_the_same_key_gives_one_answer(api_settings: Settings) -> None:
    data = image_bytes(seed=7)
    twin_answer: dict[str, Any] = {}

    def twin() -> None:
        twin_client = TestClient(app, headers=AUTH)  # not entered: its own event loop, callable from this thread
        twin_answer["r"] = post_images(twin_client, data, headers={"Idempotency-Key": "twin"})

    ddb = TwinArrives(client("dynamodb", api_settings), twin)
    app = create_app(api_settings, dynamodb=ddb)
    with TestClient(app, headers=AUTH) as c:
        first = post_images(c, data, headers={"Idempotency-Key": "twin"})
    assert ddb.fired and twin_answer["r"].status_code == 202
    assert first.status_code == 202 and first.json() == twin_answer["r"].json()
    s = _assert_no_orphans(api_settings)
    statuses = sorted((j["status"]["S"], j.get("error_class", {}).get("S")) for j in s["jobs"].values())
    assert statuses == [("FAILED", "duplicate"), ("QUEUED", None)]  # the loser's job never runs
    assert [m["job_ids"] for m in s["messages"]] == [[first.json()["jobs"][0]["job_id"]]]


def test_lifespan_shutdown_flushes_the_micro_batcher(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"batch_window_s": 3600.0})
    with TestClient(create_app(settings), headers=AUTH) as c:
        accepted = [post_images(c, image_bytes(seed=i)).json()["jobs"][0]["job_id"] for i in range(3)]
        assert stored(api_settings)["messages"] == []  # waiting for the (long) window
    s = stored(api_settings)  # the app shut down: the buffer was sent
    assert [m["job_ids"] for m in s["messages"]] == [accepted]
    assert all("enqueued_at" in j for j in s["jobs"].values())


def test_jobs_of_an_api_killed_before_its_send_are_redriven_by_reconcile(api_settings: Settings) -> None:
    """The micro-batcher's buffer dies with its API task (here: a window that never ends and no shutdown flush).
    The jobs the 202 promised are in DynamoDB, written as promised to the queue, and the reconciler sends them
    once the threshold has passed since their upload (the queue is empty: nothing else waits)."""
    settings = api_settings.model_copy(update={"batch_window_s": 3600.0})
    app = TestClient(create_app(settings), headers=AUTH)  # not entered: no lifespan, so the buffer is never sent
    r = post_images(app, image_bytes(seed=1), image_bytes(seed=2))
    assert r.status_code == 202
    ids = sorted(j["job_id"] for j in r.json()["jobs"])
    s = stored(settings)
    assert s["messages"] == [] and sorted(s["jobs"]) == ids
    accepted_at = sorted(int(j["created_at"]["N"]) for j in s["jobs"].values())  # written side by side
    threshold_ms = settings.stuck_after_s * 1000
    assert reconcile_once(settings, now_ms=accepted_at[0] + threshold_ms - 1).requeued_ids == []
    report = reconcile_once(settings, now_ms=accepted_at[-1] + threshold_ms)
    assert sorted(report.requeued["enqueue_stale"]) == ids and report.requeued["never_enqueued"] == []
    assert sorted(i for m in stored(settings)["messages"] for i in m["job_ids"]) == ids  # sent once each
