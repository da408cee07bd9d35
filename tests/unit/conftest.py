"""Shared fixtures of the unit suite.

``engine`` is every executor Kalla has (``kalla.engine.ENGINES``): a test that takes it runs
once per engine, so the recipe cases, the property test and the memory and join tests are
the engine parity suite. Adding an engine to ``ENGINES`` runs them all on it.
"""

from __future__ import annotations

import pytest

from kalla.engine import ENGINES


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)
