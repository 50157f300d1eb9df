"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stripe_checkout_mw.testing import StripeEmulator

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(starting_with: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    matches = [b for b in blocks if starting_with in b]
    assert len(matches) == 1, f"README has {len(matches)} blocks with {starting_with!r}"
    return matches[0]


def my_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"shop"]


def test_offline_testing_example(stripe_emulator: StripeEmulator) -> None:
    namespace: dict[str, Any] = {"my_app": my_app}
    exec(python_block("def test_checkout(stripe_emulator)"), namespace)
    namespace["test_checkout"](stripe_emulator)
    assert len(stripe_emulator.sessions) == 1
    assert stripe_emulator.sessions[0]["status"] == "complete"
