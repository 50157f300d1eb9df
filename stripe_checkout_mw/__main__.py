"""``python -m stripe_checkout_mw COMMAND``: the command line of :mod:`stripe_checkout_mw.cli`."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
