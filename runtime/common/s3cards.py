"""Reading one model card from S3, the same way in the API (which lists cards) and the worker (which loads models).

Both must refuse an oversized card unread and report it in the same words, or a folder the API lists as usable
could fail in the worker (or the other way round).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from runtime.common.cards import MAX_CARD_BYTES, CardError

MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def is_missing(exc: ClientError) -> bool:
    """True when S3 says the object is not there (it was deleted after the listing that named it)."""
    return str(exc.response.get("Error", {}).get("Code", "")) in MISSING_CODES


def read_card_bytes(s3: Any, bucket: str, key: str, *, where: str) -> bytes:
    """The bytes of the card at ``key``; :class:`CardError` (naming ``where``) when it is too big to be a card.

    S3 errors (a missing object included) are raised as they are: what they mean differs between the callers.
    """
    obj = s3.get_object(Bucket=bucket, Key=key)
    if int(obj.get("ContentLength", 0)) > MAX_CARD_BYTES:
        obj["Body"].close()
        raise CardError(f"{where}card.json is over {MAX_CARD_BYTES} bytes; a card is a small JSON file")
    return bytes(obj["Body"].read())
