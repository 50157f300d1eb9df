"""Stripe-looking object ids (``cs_test_...``, ``price_...``) for the emulator's objects."""

from __future__ import annotations

import secrets
import string

__all__ = ["new_id"]

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: ``prefix`` plus random letters and digits."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))
