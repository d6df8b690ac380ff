"""Webhook URLs that cannot reach inside the network (SSRF), and the signature on every delivery.

The API checks a ``notify_url`` when a batch is created and the results task checks it again before every
delivery, each time resolving the name afresh: a name that pointed to a public address at creation may point to
``169.254.169.254`` by the time the batch completes (DNS rebinding). Every address the name resolves to must be
public; the delivery then connects to the checked address itself, never resolving the name a second time.

Everything that can be judged from the text alone is judged before any lookup: an RFC 3986 URL (ASCII; other
characters percent-encoded), https, no credentials or fragment, and a host that is a public DNS name (at least two
labels, none of the special-use names such as ``localhost`` or ``*.internal``) or an IP address written the
canonical way. So a malformed URL, or one that could only reach this network, is refused at once, and a lookup
(at most ``RESOLVE_TIMEOUT_S``) is spent only on names that may be public.

Signature (docs/notifications.md): ``Segscale-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
with ``Segscale-Timestamp: <epoch seconds>``, so a receiver can check both who sent the body and that it is fresh.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048
# RFC 3986: unreserved, reserved and "%" (whose escapes are checked separately).
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Names that never resolve to a public receiver (RFC 6761, 6762, 7686, 8375, 9476; ICANN's private-use .internal).
SPECIAL_USE_SUFFIXES = ("localhost", "local", "internal", "invalid", "test", "onion", "alt", "home.arpa")
SIGNATURE_HEADER = "Segscale-Signature"
TIMESTAMP_HEADER = "Segscale-Timestamp"
EVENT_ID_HEADER = "Segscale-Event-Id"
SIGNATURE_VERSION = "v1"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], list[str]]


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks; the message says why, for the 422 and the delivery record."""


@dataclass(frozen=True)
class WebhookTarget:
    """A checked URL: where to connect (``address``) and what to ask for (``host``, ``path``)."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: str


RESOLVE_TIMEOUT_S = 3.0


def resolve(host: str, port: int, *, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), within ``timeout_s``: ``getaddrinfo`` has no time-out of
    its own, and a request that names a slow resolver's host must not hold an API thread for long."""
    found: list[str] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        except (OSError, UnicodeError) as exc:
            failure.append(exc)

    thread = threading.Thread(target=lookup, name="resolve", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise OSError(f"no answer within {timeout_s:g} s")
    if failure:
        raise failure[0]
    return found


def _embedded_v4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(address: str, *, allow_loopback: bool) -> str | None:
    """Why ``address`` may not receive webhooks, or None. Only public unicast addresses may; that leaves out
    private, loopback, link-local (the instance metadata service at 169.254.169.254 and fd00:ec2::254), shared
    (100.64.0.0/10), multicast, reserved and unspecified ones, also when wrapped in an IPv6 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    ip = _embedded_v4(ip) or ip
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (instance metadata lives there)"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return f"{ip} is not a public unicast address"
    return None


def _host_problem(host: str, *, local_http: bool) -> str | None:
    """Why ``host`` (as ``urlsplit`` gives it: lower case, IPv6 without brackets) cannot be a public receiver, judged
    without a lookup; None: it may be one (an IP address is judged by ``address_problem`` afterwards)."""
    try:
        ipaddress.ip_address(host)  # canonical forms only: "0x7f.1" or "2130706433" are judged as names below
        return None
    except ValueError:
        pass
    if local_http and host == "localhost":
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"{host!r} is not a valid host name (letters, digits and hyphens; punycode for other scripts)"
    if len(labels) < 2:
        return f"{host!r} is a single-label name, which only a local network resolves"
    if labels[-1].isdigit():
        return f"{host!r} is neither a host name nor an IP address written the usual way"
    if any(host == suffix or host.endswith("." + suffix) for suffix in SPECIAL_USE_SUFFIXES):
        return f"{host!r} is a special-use name, never a public address"
    return None


def check_url(url: str, *, local_http: bool = False, resolver: Resolver = resolve) -> WebhookTarget:
    """A URL that may receive webhooks, resolved now; raises ``UnsafeUrl`` saying why not.

    Only ``https`` to public addresses, without credentials in the URL. ``local_http`` (the local stack only)
    also allows loopback addresses (and ``localhost``), over ``http`` or ``https``.
    """
    if not url:
        raise UnsafeUrl("notify_url is empty; leave it out for no webhook")
    if len(url) > MAX_URL_CHARS:
        raise UnsafeUrl(f"notify_url is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("notify_url contains spaces or control characters")
    if not _URL_CHARS.fullmatch(url) or _BAD_ESCAPE.search(url):
        raise UnsafeUrl("notify_url is not an ASCII URL (RFC 3986): percent-encode other characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"notify_url is not a valid URL: {exc}") from None
    if any(c in parts.path + parts.query for c in "[]"):
        raise UnsafeUrl("notify_url is not a valid URL: brackets belong around an IPv6 address only")
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if local_http else ("https",)
    if scheme not in allowed:
        raise UnsafeUrl(f"notify_url must be an {' or '.join(allowed)} URL, got {scheme or 'no'} scheme")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("notify_url must not contain credentials; receivers check the signature instead")
    if parts.fragment or "#" in url:
        raise UnsafeUrl("notify_url must not contain a fragment (#...)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("notify_url has no host")
    if (problem := _host_problem(host, local_http=local_http)) is not None:
        raise UnsafeUrl(f"notify_url may not point there: {problem}")
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"the host {host!r} of notify_url does not resolve ({exc})") from None
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} of notify_url does not resolve")
    for address in addresses:
        problem = address_problem(address, allow_loopback=local_http)
        if problem is not None:
            raise UnsafeUrl(f"notify_url may not point inside a network: {host!r} resolves to {problem}")
        if scheme == "http" and not ipaddress.ip_address(address.split("%", 1)[0]).is_loopback:
            raise UnsafeUrl("notify_url must be https (plain http is allowed only to a loopback address locally)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return WebhookTarget(url=url, scheme=scheme, host=host, port=port, path=path, address=addresses[0])


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Segscale-Signature`` value for a body sent at ``timestamp`` (epoch seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify(
    secret: str, timestamp: str, signature_header: str, body: bytes, *, now_s: int, tolerance_s: int = 300
) -> bool:
    """A receiver's check (the local webhook receiver uses it; docs/notifications.md has the same in plain Python):
    the signature matches and the timestamp is within ``tolerance_s`` of ``now_s``, so a replay fails."""
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    expected = signature(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature_header.split(","))


def signed_headers(secret: str, timestamp: int, body: bytes, event_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "segscale-webhooks/1",
        EVENT_ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
