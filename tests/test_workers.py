"""Worker slots and wakes against a real moto server: the bound, leases, expiry, hand-over, the scale turn."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest

from runtime.common import messages, metrics
from runtime.common.aws import client
from runtime.common.settings import Settings
from runtime.common.workers import EXITING, RUNNING, WAKING, Waker, WorkerSlots, desired_workers, new_wake_id
from tests.queues import drain_bodies
from tests.results.conftest import Clock


def _slots(settings: Settings, clock: Clock, max_workers: int = 3) -> WorkerSlots:
    return WorkerSlots(
        client("dynamodb", settings),
        settings.table,
        max_workers=max_workers,
        slot_lease_s=60,
        start_timeout_s=300,
        clock=clock,
    )


def _wake_queue(settings: Settings) -> str:
    sqs = client("sqs", settings)
    return str(sqs.create_queue(QueueName=settings.table + "-wake")["QueueUrl"])


def _wakes(settings: Settings, url: str) -> list[messages.WakeMessage]:
    return [messages.decode_wake(body) for body in drain_bodies(client("sqs", settings), url)]


def test_reservations_never_exceed_max_workers_even_when_they_race(settings: Settings) -> None:
    clock = Clock()
    slots = _slots(settings, clock, max_workers=3)
    won: list[int] = []
    barrier = threading.Barrier(8)

    def one() -> None:
        own = _slots(settings, clock, max_workers=3)  # its own client, like another API task
        barrier.wait()
        got = own.reserve(new_wake_id())
        if got is not None:
            won.append(got)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(won) == [0, 1, 2]
    assert [s.state for s in slots.live()] == [WAKING] * 3
    assert slots.reserve(new_wake_id()) is None and slots.acquire("w-extra") is None


def test_a_woken_task_adopts_renews_and_leaves(settings: Settings) -> None:
    clock = Clock()
    slots = _slots(settings, clock, max_workers=1)
    wake = new_wake_id()
    number = slots.reserve(wake)
    assert number == 0
    assert not slots.adopt(0, "f" * 32, "w-impostor")  # a wake id that did not reserve it
    assert slots.adopt(0, wake, "w1")
    assert not slots.adopt(0, wake, "w2")  # a second delivery of the same wake message finds it taken
    (live,) = slots.live()
    assert (live.state, live.holder, live.lease_expires_at) == (RUNNING, "w1", clock.now + 60_000)
    clock.advance(30_000)
    assert slots.renew(0, "w1") and slots.live()[0].lease_expires_at == clock.now + 60_000
    assert not slots.renew(0, "w2")
    assert slots.begin_exit(0, "w1", grace_s=5)
    assert slots.live() == [] and slots.read()[0].state == EXITING  # not live: wakers start someone else
    assert slots.reserve(new_wake_id()) is None  # ...but not free until the exiting process is gone
    clock.advance(5_001)
    assert slots.reserve(new_wake_id()) == 0


def test_a_task_that_never_starts_frees_its_slot_by_expiry(settings: Settings) -> None:
    """RunTask can answer 200 and start nothing: the reservation times out and the next wake gets the slot."""
    clock = Clock()
    slots = _slots(settings, clock, max_workers=1)
    lost = new_wake_id()
    assert slots.reserve(lost) == 0
    clock.advance(299_000)
    assert slots.reserve(new_wake_id()) is None and len(slots.live()) == 1
    clock.advance(2_000)  # past worker_start_timeout_s
    assert slots.live() == []
    second = new_wake_id()
    assert slots.reserve(second) == 0
    assert not slots.adopt(0, lost, "w-late")  # the task that finally starts for the old wake cannot take it
    assert slots.adopt(0, second, "w-new")


def test_a_killed_worker_frees_its_slot_when_the_lease_passes(settings: Settings) -> None:
    clock = Clock()
    slots = _slots(settings, clock, max_workers=1)
    assert slots.acquire("w-killed") == 0
    clock.advance(59_000)
    assert slots.acquire("w2") is None
    clock.advance(2_000)
    assert slots.acquire("w2") == 0
    assert not slots.renew(0, "w-killed")  # it would notice if it were still alive


def test_hand_over_and_cancel(settings: Settings) -> None:
    clock = Clock()
    slots = _slots(settings, clock, max_workers=1)
    assert slots.acquire("w-old") == 0
    successor = new_wake_id()
    assert slots.hand_over(0, "w-old", successor)
    assert slots.read()[0].state == WAKING and slots.adopt(0, successor, "w-new")
    assert not slots.hand_over(0, "w-old", new_wake_id())  # no longer ours to give
    unsent = new_wake_id()
    assert slots.hand_over(0, "w-new", unsent)
    assert slots.cancel(0, unsent)
    clock.advance(1)
    assert slots.live() == [] and slots.acquire("w3") == 0


def test_one_scale_turn_per_interval_across_the_fleet(settings: Settings) -> None:
    clock = Clock()
    fleet = [_slots(settings, clock) for _ in range(5)]
    assert [s.take_scale_turn(15) for s in fleet] == [True, False, False, False, False]
    clock.advance(14_999)
    assert not any(s.take_scale_turn(15) for s in fleet)
    clock.advance(1)
    assert sum(s.take_scale_turn(15) for s in fleet) == 1


@pytest.mark.parametrize(("waiting", "want"), [(0, 0), (1, 1), (400, 1), (401, 2), (1200, 3), (100_000, 20)], ids=str)
def test_desired_workers_is_one_per_jobs_per_worker_up_to_the_bound(waiting: int, want: int) -> None:
    assert desired_workers(waiting, jobs_per_worker=400, max_workers=20) == want


def test_waker_reserves_then_sends_and_counts_it(settings: Settings) -> None:
    clock = Clock()
    url = _wake_queue(settings)
    out = io.StringIO()
    waker = Waker(
        _slots(settings, clock, max_workers=2),
        client("sqs", settings),
        url,
        by="api",
        service=metrics.API_SERVICE,
        metrics_stream=out,
    )
    assert waker.ensure_worker() == (0, waker.slots.live()[0].number)
    assert waker.ensure_worker()[1] is None  # one is starting: enough
    (wake,) = _wakes(settings, url)
    assert wake.by == "api" and waker.slots.read()[wake.slot].holder == wake.wake_id
    assert waker.scale_to(5, live=1) == [1 - wake.slot]  # only one slot left
    assert waker.scale_to(5, live=2) == []
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d[metrics.WORKER_WAKES] for d in docs] == [1, 1]
    assert all(d[metrics.SERVICE_DIMENSION] == metrics.API_SERVICE for d in docs)


class FailingSend:
    """A real boto3 SQS client whose send_message fails (the endpoint is unreachable)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def send_message(self, **kwargs: Any) -> Any:
        from botocore.exceptions import EndpointConnectionError

        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


def test_a_wake_that_cannot_be_sent_frees_its_reservation(settings: Settings) -> None:
    clock = Clock()
    slots = _slots(settings, clock, max_workers=1)
    waker = Waker(slots, FailingSend(client("sqs", settings)), "http://x/q", by="reconciler", service="results")
    assert waker.wake() is None and waker.sent == 0
    clock.advance(1)
    assert slots.live() == [] and slots.reserve(new_wake_id()) == 0


def test_without_a_wake_queue_nothing_is_woken(settings: Settings) -> None:
    waker = Waker(_slots(settings, Clock()), client("sqs", settings), "", by="api", service="api")
    assert not waker.enabled and waker.ensure_worker() == (0, None) and waker.slots.live() == []


A32 = "a" * 32
JUNK_WAKES = [
    "",
    "nope",
    "[]",
    '{"v":1,"kind":"wake","slot":-1,"id":"' + A32 + '","by":"api"}',
    '{"v":1,"kind":"wake","slot":1,"id":"xyz","by":"api"}',
    '{"v":1,"kind":"wake","slot":true,"id":"' + A32 + '","by":"api"}',
    '{"v":1,"kind":"wake","slot":1,"id":"' + A32 + '","by":"nobody"}',
    messages.BatchMessage(job_ids=(A32,)).to_body(),
]


@pytest.mark.parametrize("body", JUNK_WAKES)
def test_junk_wake_messages_are_refused(body: str) -> None:
    with pytest.raises(messages.BadMessage):
        messages.decode_wake(body)


def test_wake_messages_round_trip() -> None:
    wake = messages.WakeMessage(slot=3, by="worker")
    assert messages.decode_wake(wake.to_body()) == wake
    assert messages.decode_wake(json.dumps(wake.to_body())) == wake  # the pipe may quote it once more
    with pytest.raises(messages.BadMessage):
        messages.decode(wake.to_body())  # a wake is not a batch either
