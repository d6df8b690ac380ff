"""S3 ListObjectsV2 from a sorted index of each bucket's key names, rendered as XML directly.

moto lists a page by walking and sorting the whole bucket (so listing a 100,000-key prefix page by page is
quadratic) and renders it through its generic XML serializer, which parses every LastModified back with dateutil:
about a millisecond per key. Here each bucket's key names are kept sorted between requests (checked against the
bucket, in C, before every page, and patched or rebuilt when they changed), a page is a bisect plus a walk over
the keys it returns, and the XML is written in the order and with the escaping moto's serializer uses. The listing
rules are moto's (folders from delete markers too, tokens are the md5 of the last name, registered with the
backend so moto's own code can continue a listing this module started and the other way round).
"""

from __future__ import annotations

import threading
import urllib.parse
import weakref
from bisect import bisect_left, bisect_right, insort
from typing import Any
from xml.sax.saxutils import escape

from moto import settings
from moto.s3.exceptions import InvalidContinuationToken
from moto.s3.models import FakeKey, FakeTableStorageBucket
from moto.s3.responses import S3Response
from moto.utilities.utils import md5_hash

from local.motofast import S3_LIST, SERVED

OWNER_XML = (
    "<Owner><DisplayName>webfile</DisplayName>"
    "<ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner>"
)
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
_PATCH_LIMIT = 100  # more changed names than this since the last page: sort again rather than insert one by one
_LAST_NAME = "\U0010ffff"


class SortedNames:
    """The sorted key names of one bucket's key store, brought up to date on every use."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.members: set[str] = set()
        self.lock = threading.Lock()

    def current(self, store: dict[str, Any]) -> list[str]:
        with self.lock:
            keys = store.keys()
            if keys != self.members:
                added = keys - self.members
                removed = self.members - keys
                if len(added) + len(removed) > _PATCH_LIMIT:
                    self.names = sorted(keys)
                    self.members = set(self.names)
                else:
                    names = list(self.names)  # pages being rendered keep the list they started with
                    for name in removed:
                        del names[bisect_left(names, name)]
                    for name in added:
                        insort(names, name)
                    self.names = names
                    self.members = (self.members - removed) | added
            return self.names


_INDEXES: weakref.WeakKeyDictionary[Any, SortedNames] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def sorted_names(bucket: Any) -> list[str]:
    with _INDEXES_LOCK:
        index = _INDEXES.get(bucket)
        if index is None:
            index = _INDEXES[bucket] = SortedNames()
    return index.current(bucket.keys)


def list_page(
    bucket: Any, prefix: str, delimiter: str, after: str | None, max_keys: int
) -> tuple[list[FakeKey | str], bool, str | None]:
    """moto's ``list_objects_v2`` result: keys and common prefixes after ``after``, at most ``max_keys``."""
    if max_keys == 0:
        return [], False, None
    names = sorted_names(bucket)
    store = bucket.keys
    start = bisect_left(names, prefix)
    if after is not None:
        start = max(start, bisect_right(names, after))
    page: list[FakeKey | str] = []
    at, end, cut = start, len(names), len(prefix)
    while at < end and len(page) <= max_keys:
        name = names[at]
        if not name.startswith(prefix):
            break
        if delimiter and delimiter in name[cut:]:
            folder = prefix + name[cut:].split(delimiter)[0] + delimiter
            if after is None or folder > after:
                page.append(folder)
            at = bisect_left(names, folder + _LAST_NAME, at)
            while at < end and names[at].startswith(folder):
                at += 1
            continue
        key = store.get(name)
        if isinstance(key, FakeKey):
            page.append(key)
        at += 1
    if len(page) <= max_keys:
        return page, False, None
    page = page[:max_keys]
    last = page[-1]
    last_name = last.name if isinstance(last, FakeKey) else last
    token = md5_hash(last_name.encode("utf-8")).hexdigest()
    return page, True, token


def _element(tag: str, text: str) -> str:
    return f"<{tag}>{escape(text)}</{tag}>" if text else f"<{tag}/>"


def render(
    bucket_name: str,
    page: list[FakeKey | str],
    *,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    truncated: bool,
    next_token: str | None,
    start_after: str | None,
    encoding_type: str | None,
    fetch_owner: bool,
) -> str:
    """The ListObjectsV2 XML moto's serializer writes for this page (same elements, order and escaping)."""
    url = encoding_type == "url"
    parts = [XML_HEAD, "<IsTruncated>true</IsTruncated>" if truncated else "<IsTruncated>false</IsTruncated>"]
    folders = []
    for item in page:
        if not isinstance(item, FakeKey):
            folders.append(urllib.parse.quote(item) if url else item)
            continue
        name = urllib.parse.quote(item.name) if url else item.name
        parts.append("<Contents>")
        parts.append(_element("Key", name))
        parts.append(f"<LastModified>{item.last_modified.strftime('%Y-%m-%dT%H:%M:%S.000Z')}</LastModified>")
        parts.append(_element("ETag", item.etag))
        if item.checksum_algorithm:
            parts.append(_element("ChecksumAlgorithm", str(item.checksum_algorithm)))
        parts.append(f"<Size>{int(item.size)}</Size>")
        if item.storage_class is not None:
            parts.append(_element("StorageClass", str(item.storage_class)))
        if fetch_owner:
            parts.append(OWNER_XML)
        parts.append("</Contents>")
    if url:
        prefix = urllib.parse.quote(prefix) if prefix else ""
    parts.append(_element("Name", bucket_name))
    parts.append(_element("Prefix", prefix))
    if delimiter:
        parts.append(_element("Delimiter", delimiter))
    parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
    if delimiter:
        parts.extend(f"<CommonPrefixes>{_element('Prefix', folder)}</CommonPrefixes>" for folder in folders)
    if encoding_type:
        parts.append(_element("EncodingType", encoding_type))
    parts.append(f"<KeyCount>{len(page)}</KeyCount>")
    if next_token:
        parts.append(_element("NextContinuationToken", next_token))
    if start_after:
        parts.append(_element("StartAfter", start_after))
    parts.append("</ListBucketResult>")
    return "".join(parts)


class FastS3Response(S3Response):
    """moto's S3 handler, with ListObjectsV2 served by ``list_page`` and ``render``."""

    def list_objects_v2(self) -> Any:
        if settings.PRETTIFY_RESPONSES:
            return super().list_objects_v2()
        # The parameters exactly as moto reads them (and failing as moto fails).
        bucket = self.backend.get_bucket(self.bucket_name)
        continuation_token = self.querystring.get("continuation-token", [None])[0]
        if continuation_token is not None and continuation_token == "":
            raise InvalidContinuationToken()
        querystring = self._get_querystring(self.request, self.uri)
        prefix = querystring.get("prefix", [None])[0]
        if prefix and isinstance(prefix, bytes):
            prefix = prefix.decode("utf-8")
        delimiter = self.querystring.get("delimiter", [None])[0]
        fetch_owner = self.querystring.get("fetch-owner", [False])[0]
        max_keys = int(self.querystring.get("max-keys", [settings.get_s3_default_max_keys()])[0])
        start_after = self.querystring.get("start-after", [None])[0]
        encoding_type = self.querystring.get("encoding-type", [None])[0]

        tokens = self.backend._pagination_tokens
        if (
            isinstance(bucket, FakeTableStorageBucket)
            or max_keys < 0
            or (continuation_token and continuation_token not in tokens)
            or not isinstance(prefix or "", str)
        ):
            return super().list_objects_v2()
        after = tokens[continuation_token] if continuation_token else (start_after or None)
        page, truncated, next_token = list_page(bucket, prefix or "", delimiter or "", after, max_keys)
        if next_token:
            last = page[-1]
            tokens[next_token] = last.name if isinstance(last, FakeKey) else last
        body = render(
            bucket.name,
            page,
            prefix=prefix or "",
            delimiter=delimiter,
            max_keys=max_keys,
            truncated=truncated,
            next_token=next_token,
            start_after=None if continuation_token else start_after,
            encoding_type=encoding_type,
            fetch_owner=bool(fetch_owner),
        )
        SERVED[S3_LIST] += 1
        headers = {"Content-Type": "application/xml"}
        headers.update(self.response_headers)
        # As bytes: moto then skips its search for a <RequestId> element to fill in (a regex over the whole body,
        # a sixth of a page's cost), which cannot match here since every text is escaped.
        return 200, headers, body.encode("utf-8")
