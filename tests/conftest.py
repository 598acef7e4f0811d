"""Shared fixtures: every test stops all actors it started.

Hypothesis runs without its per-example deadline and its "input generation is slow" health
check: on a loaded 2-core CI machine both fail tests for the machine's speed, not the code's.
The properties and example counts are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "logcap", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("logcap")


@pytest.fixture(autouse=True)
def stop_all_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=10)
