"""The command line module: lazy subcommands, signals, and ``python -m`` and the script agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from stripe_checkout_mw.cli.main import main, stop_on_signals

COMMAND_MODULES = ("stripe_checkout_mw.cli.demo", "stripe_checkout_mw.demo_shop",
                   "stripe_checkout_mw.testing", "stripe_checkout_mw.cli.check",
                   "stripe_checkout_mw.cli.operations", "stripe_checkout_mw.news.reconcile")


def test_the_parser_and_help_import_no_command() -> None:
    code = ("import sys\n"
            "from stripe_checkout_mw.cli.main import build_parser\n"
            "build_parser().format_help()\n"
            "print('\\n'.join(sys.modules))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()
    assert "stripe_checkout_mw.cli.main" in loaded
    assert [name for name in COMMAND_MODULES if name in loaded] == []


def test_every_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    listing = capsys.readouterr().out
    listed = [line.split()[0] for line in listing.splitlines() if line.startswith("    ")
              and not line.startswith("     ")]
    assert listed == ["demo", "emulator", "check", "webhook-endpoint", "orders", "events",
                      "invoices", "fulfil-pending", "sync", "subscriptions", "grants",
                      "customers"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_set_the_stop_event_and_the_handlers_come_back(
    signum: signal.Signals,
) -> None:
    before = signal.getsignal(signum)
    with stop_on_signals() as stop:
        assert signal.getsignal(signum) is not before
        os.kill(os.getpid(), signum)
        assert stop.wait(5)
    assert signal.getsignal(signum) is before


def test_python_dash_m_runs_the_same_command_line() -> None:
    answer = subprocess.run([sys.executable, "-m", "stripe_checkout_mw", "demo", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert "--framework {bottle,pyramid,flask,wsgi,members}" in answer.stdout
    answer = subprocess.run([sys.executable, "-m", "stripe_checkout_mw", "demo", "--port", "x"],
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 2
    assert "'x' is not a port number" in answer.stderr and "Traceback" not in answer.stderr
