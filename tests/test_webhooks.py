"""Which webhook URLs are refused (SSRF), and the signature a receiver checks."""

from __future__ import annotations

import socket
import time

import pytest

from runtime.common.webhooks import UnsafeUrl, check_url, resolve, signature, verify

PUBLIC = "93.184.216.34"


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # the instance metadata service
        ("fd00:ec2::254", "private"),  # its IPv6 address
        ("fe80::1", "link-local"),
        ("100.100.100.200", "not a public"),  # shared address space (another cloud's metadata)
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("0.0.0.0", "private"),
        ("224.0.0.1", "not a public"),
    ],
)
def test_urls_resolving_inside_a_network_are_refused(address: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check_url("https://hooks.example.com/x", resolver=resolver(address))


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    with pytest.raises(UnsafeUrl, match="private"):
        check_url("https://hooks.example.com/x", resolver=resolver(PUBLIC, "10.0.0.1"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks.example.com/x#frag", "fragment"),
        ("https:///x", "no host"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://hooks.example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_malformed_or_plain_http_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check_url(url, resolver=resolver(PUBLIC))


def no_lookup(host: str, port: int) -> list[str]:
    raise AssertionError(f"looked up {host!r}: this URL should have been refused from its text")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "empty"),
        ("https://hooks.example.com/caf\u00e9", "ASCII"),
        ("https://hooks.example.com/%zz", "ASCII"),
        ("https://hooks.example.com/<x>", "ASCII"),
        ("https://hooks.example.com/[x]", "brackets"),
        ("https://hooks.example.com/x#", "fragment"),
        ("https://hooks/x", "single-label"),
        ("https://localhost/x", "single-label"),
        ("https://2130706433/x", "single-label"),  # 127.0.0.1 as one number
        ("https://0x7f.1/x", "neither a host name nor an IP"),
        ("https://017.0.0.1/x", "neither a host name nor an IP"),  # octal
        ("https://-hooks.example.com/x", "not a valid host name"),
        ("https://hooks_1.example.com/x", "not a valid host name"),
        ("https://" + "a" * 64 + ".example.com/x", "not a valid host name"),
        ("https://metadata.google.internal/x", "special-use"),
        ("https://printer.local/x", "special-use"),
        ("https://x.localhost/x", "special-use"),
        ("https://router.home.arpa/x", "special-use"),
    ],
)
def test_what_the_text_alone_refuses_costs_no_lookup(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check_url(url, resolver=no_lookup)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("https://nowhere.example.net/x", resolver=fail)


def test_resolution_is_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that never answers (the system's, not ours) cannot hold an API thread for long."""

    def never(*args: object, **kwargs: object) -> list[object]:
        time.sleep(5)
        raise OSError("too late")

    monkeypatch.setattr(socket, "getaddrinfo", never)
    started = time.monotonic()
    with pytest.raises(OSError, match=r"no answer within 0\.2 s"):
        resolve("hooks.example.com", 443, timeout_s=0.2)
    assert time.monotonic() - started < 2
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("https://hooks.example.com/x", resolver=lambda h, p: resolve(h, p, timeout_s=0.2))


def test_public_https_passes_and_pins_the_checked_address() -> None:
    target = check_url("https://hooks.example.com:8443/in?x=1", resolver=resolver(PUBLIC))
    assert (target.host, target.port, target.path, target.address) == ("hooks.example.com", 8443, "/in?x=1", PUBLIC)


def test_local_mode_allows_http_to_loopback_only() -> None:
    assert check_url("http://127.0.0.1:9/hook", local_http=True).address == "127.0.0.1"
    assert check_url("http://localhost:9/hook", local_http=True, resolver=resolver("127.0.0.1")).host == "localhost"
    with pytest.raises(UnsafeUrl, match="https"):
        check_url("http://127.0.0.1:9/hook")
    with pytest.raises(UnsafeUrl, match="loopback"):
        check_url("https://127.0.0.1:9/hook")
    with pytest.raises(UnsafeUrl, match="private"):
        check_url("http://10.0.0.1/hook", local_http=True, resolver=resolver("10.0.0.1"))
    with pytest.raises(UnsafeUrl, match="https"):
        check_url("http://hooks.example.com/x", local_http=True, resolver=resolver(PUBLIC))


def test_signature_binds_body_and_timestamp() -> None:
    sig = signature("s3cret", 1_700_000_000, b'{"a":1}')
    assert sig.startswith("v1=") and len(sig) == 3 + 64
    assert verify("s3cret", "1700000000", sig, b'{"a":1}', now_s=1_700_000_010)
    assert not verify("s3cret", "1700000000", sig, b'{"a":2}', now_s=1_700_000_010)  # other body
    assert not verify("other", "1700000000", sig, b'{"a":1}', now_s=1_700_000_010)  # other secret
    assert not verify("s3cret", "1700000001", sig, b'{"a":1}', now_s=1_700_000_010)  # other time
    assert not verify("s3cret", "1700000000", sig, b'{"a":1}', now_s=1_700_000_400)  # too old: a replay
