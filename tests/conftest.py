"""Suite-wide rules: in CI (STRIPE_CHECKOUT_NO_SKIPS=1) a skipped test fails the run.

Skips are only for dependencies that are genuinely absent on a developer's machine
(Chromium, a PostgreSQL server); CI installs and starts them, so a skip there means a
test silently did not run.
"""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("STRIPE_CHECKOUT_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == 0:
        for report in skipped:
            reporter.write_line(f"SKIPPED IN CI (counts as a failure): {report.nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
