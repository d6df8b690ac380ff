"""SQS message counts taken with one clock reading per count instead of one or two per message.

moto 5.2 computes a queue's ``ApproximateNumberOfMessages*`` by asking every message in the queue whether it is
visible and whether it is delayed, and each of those questions reads the clock (``unix_time_millis``, a datetime
built and subtracted: about 2 us). It builds these counts on every read of ``Queue.attributes``, and
``send_message`` reads ``Queue.attributes`` for every message it sends (to look up ``ContentBasedDeduplication``).
So every message sent walks the whole queue with three or four clock readings per queued message: sending 100,000
job ids (1,000 messages) to one queue took 10.7 s, the last ``SendMessageBatch`` 190 ms, and the ingester's
enqueueing grew with the square of the batch. ``receive_message`` reads ``Queue.messages``, the same walk.

Here each count reads the clock once and compares every message's ``visible_at`` and ``delayed_until`` with that
instant, which is what moto's ``Message.visible`` and ``Message.delayed`` compare, so the counts are the ones moto
gives for a queue that does not change during the walk (moto's own walk reads a new instant per message, a few
microseconds apart). Process-wide (``Queue`` is moto's class): it changes CPU only.
"""

from __future__ import annotations

from moto.sqs import models
from moto.sqs.models import Message, Queue

_MOTO: dict[str, property] = {}


def _now() -> float:
    return models.unix_time_millis()  # the function moto's Message.visible and .delayed read


def messages(self: Queue) -> list[Message]:
    """Visible and not delayed (moto's ``Queue.messages``)."""
    now = _now()
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


def approximate_number_of_messages(self: Queue) -> int:
    return len(messages(self))


def approximate_number_of_messages_delayed(self: Queue) -> int:
    now = _now()
    return sum(1 for m in self._messages if now < m.delayed_until)


def approximate_number_of_messages_not_visible(self: Queue) -> int:
    now = _now()
    return sum(1 for m in self._messages if not now > m.visible_at)


FAST: dict[str, property] = {
    "messages": property(messages),
    "approximate_number_of_messages": property(approximate_number_of_messages),
    "approximate_number_of_messages_delayed": property(approximate_number_of_messages_delayed),
    "approximate_number_of_messages_not_visible": property(approximate_number_of_messages_not_visible),
}


def moto_property(name: str) -> property:
    """moto's own property ``name`` of ``Queue`` (for the equivalence tests)."""
    return _MOTO.get(name) or vars(Queue)[name]


def install() -> None:
    for name, fast in FAST.items():
        _MOTO.setdefault(name, vars(Queue)[name])
        setattr(Queue, name, fast)
