"""Where no browser can be had, the browser tests skip with the reason; under CI=true they fail instead."""

from __future__ import annotations

import pytest

from local.procs import REPO_ROOT
from tests.browser.conftest import skip_or_fail, unavailable


def test_a_missing_browser_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSCALE_CHROMIUM", str(REPO_ROOT / "no-such-chromium"))
    reason = unavailable()
    assert reason is not None and "no Chromium found" in reason and "make browser" in reason


def test_without_ci_the_browser_tests_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="browser tests skipped: no Chromium"):
        skip_or_fail("no Chromium found")


def test_under_ci_the_browser_tests_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so the browser tests must run"):
        skip_or_fail("no Chromium found")
