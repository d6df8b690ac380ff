"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright for Python, against the real local stack.

The browser is the system's: Playwright launches it by ``executable_path`` and never downloads one. ``make test``
installs the package when it is missing (``make browser``). Where no browser can be had the tests skip and say
why, except under ``CI=true``, where a missing browser is a failure: CI must prove the console works.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import make_stack  # noqa: F401  (the same stack fixture as the end-to-end tests)

# Flags that work on a 2-core machine with no display, no network beyond loopback and no user namespace sandbox.
# Playwright adds --headless and a fresh temporary --user-data-dir itself.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "run `make browser` as root (apt-get install chromium), or set SEGSCALE_CHROMIUM to a Chromium binary"


def chromium_path() -> str | None:
    configured = os.environ.get("SEGSCALE_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (it is in requirements-dev.txt: run `make install`)"
    if chromium_path() is None:
        return f"no Chromium found: {INSTALL_HINT}"
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so the browser tests must run, but they cannot: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = unavailable()
    if reason:
        skip_or_fail(reason)
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, timeout=60_000)
        except Error as exc:
            skip_or_fail(f"Chromium at {chromium_path()} did not start: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()
