"""Hypothesis profiles for the statistics engine's property tests.

``ci`` (the default) is derandomised and keeps no example database, so every run (a
laptop, CI) draws the same examples and a failure reproduces from the test id alone; it
is sized for the unit tier (seconds). ``explore`` draws fresh random examples, many more
of them, for a local hunt: ``HYPOTHESIS_PROFILE=explore uv run pytest tests/unit/abtest``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
