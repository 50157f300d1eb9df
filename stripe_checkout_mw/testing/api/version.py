"""The Stripe API version the emulator speaks."""

from __future__ import annotations

__all__ = ["API_VERSION"]

API_VERSION = "2026-10-28.endive"
"""The API version the emulator speaks and stamps on its events."""
