"""The command line: ``python -m stripe_checkout_mw COMMAND`` (see :mod:`.main`)."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
