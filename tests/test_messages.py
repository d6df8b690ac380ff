from __future__ import annotations

import json
import uuid

import pytest

from runtime.common import messages


def test_max_batch_fits_runtask_override_limit() -> None:
    ids = [uuid.uuid4().hex for _ in range(1000)]
    chunks = messages.chunk(ids, max_jobs=10_000)
    assert sum(len(c.job_ids) for c in chunks) == 1000
    for c in chunks:
        body = c.to_body()
        override = json.dumps(
            {"containerOverrides": [{"name": "worker", "environment": [{"name": "JOB_BATCH", "value": body}]}]}
        )
        assert len(override) < messages.RUNTASK_OVERRIDE_LIMIT_CHARS
        assert messages.decode(body).job_ids == c.job_ids


@pytest.mark.parametrize("body", ["", "nope", "[]", '{"v": 2, "job_ids": []}', '{"v": 1, "job_ids": ["../x"]}'])
def test_bad_messages_are_refused(body: str) -> None:
    with pytest.raises(messages.BadMessage):
        messages.decode(body)


def test_double_encoded_body_is_accepted() -> None:
    msg = messages.BatchMessage(job_ids=(uuid.uuid4().hex,))
    assert messages.decode(json.dumps(msg.to_body())).job_ids == msg.job_ids
