"""Fixtures of the local-stack tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.motoserver import MotoServer


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """(fast, stock): moto with every fast path (local/motofast) and without any, in this process, so both serve the
    same moto state and the equivalence tests can send each request to both."""
    fast, stock = MotoServer(fast=True).start(), MotoServer(fast=False).start()
    yield fast.url, stock.url
    fast.stop()
    stock.stop()
