"""Suite-wide configuration.

The rig's fixtures live in `tests/plugins/` (one module per outside system) so that the
chain and registry halves can grow independently.

A skipped test is a failed run here: CI must never go green because the real registry or
the simulator could not start. `just test` sets GOPHER_UPDATER_NO_SKIP=1.
"""

from __future__ import annotations

import os

import pytest

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
