"""The local moto server makes concurrent conditional writes atomic, as DynamoDB does."""

from __future__ import annotations

import threading
import uuid

from runtime.common.jobs import JobStore, NewJob


def test_concurrent_claims_of_one_job_have_one_winner(store: JobStore) -> None:
    wins = 0
    for _ in range(40):
        job_id = uuid.uuid4().hex
        store.create(NewJob(job_id=job_id, batch_id=uuid.uuid4().hex, input_key="k", file_name="f", model="m"))
        results: list[object] = []
        barrier = threading.Barrier(4)

        def claim(worker: str, job_id: str, barrier: threading.Barrier, results: list[object]) -> None:
            barrier.wait()
            results.append(store.claim(job_id, worker))

        threads = [threading.Thread(target=claim, args=(f"w{i}", job_id, barrier, results)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r is not None for r in results) == 1
        wins += 1
    assert wins == 40
