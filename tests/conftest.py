"""Suite-wide configuration.

The rig's fixtures live in `tests/plugins/` (one module per outside system) so that the
chain and registry halves can grow independently.

A skipped test is a failed run here: CI must never go green because the real registry or
the simulator could not start. `just test` sets GOPHER_UPDATER_NO_SKIP=1.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Fuzz tests (marker `fuzz`) take their example count from the profile: a bounded run by
# default, a long one under `just fuzz` (HYPOTHESIS_PROFILE=fuzz). Tests that are fuzzers must
# therefore not pass max_examples to @settings themselves.
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("GOPHER_UPDATER_FUZZ_EXAMPLES", "5000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

pytest_plugins = ["tests.plugins.chain", "tests.plugins.registry"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("GOPHER_UPDATER_NO_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(
            f"FAIL: {len(skipped)} test(s) skipped; skips are failures in this suite",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
