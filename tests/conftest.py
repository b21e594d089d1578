"""Shared fixtures: a fresh local account per test (moto, in-process, no network)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guardrail_cli.local import LocalGuardrail
from guardrail_cli.testing import baseline_account


@pytest.fixture
def guardrail() -> Iterator[LocalGuardrail]:
    """The seed account after the setup function converged it, with the template's defaults."""
    with baseline_account() as local:
        yield local
