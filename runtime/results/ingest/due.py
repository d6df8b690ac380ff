"""What an ``ingest`` run without a batch does, and what every reconcile pass does as the backstop (D10): drain the
drop folder's queue, then resume every ingestion that is due (a start event that was lost, a run that died)."""

from __future__ import annotations

from typing import Any

from runtime.common.settings import Settings


def ingest_everything_due(settings: Settings) -> dict[str, Any]:
    from runtime.results.ingest.inbox import drain_inbox
    from runtime.results.ingest.run import ingest_due

    inbox = drain_inbox(settings).to_dict() if settings.inbox_queue_url else None
    return {"inbox": inbox, "batches": [o.to_dict() for o in ingest_due(settings) if o.claimed]}
