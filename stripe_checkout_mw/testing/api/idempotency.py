"""Stripe's idempotency keys: a POST retried with the same key gets the first answer.

:class:`IdempotencyStore` is plain state (no routing, no HTTP): the service asks it
for a replay before running a POST that carries a key and saves the answer after.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, invalid

__all__ = ["IdempotencyStore", "StoredAnswer"]

MAX_KEY_LENGTH = 255


@dataclass
class StoredAnswer:
    """The first answer given to a key, and what it was an answer to."""

    fingerprint: str
    status: int
    body: dict[str, Any]


class IdempotencyStore:
    """The answers given to idempotent POSTs, by key."""

    def __init__(self) -> None:
        self._answers: dict[str, StoredAnswer] = {}

    @staticmethod
    def fingerprint(path: str, params: dict[str, Any]) -> str:
        """What must be the same for a key to be reused: the path and the params."""
        return json.dumps([path, params], sort_keys=True)

    def replay(self, key: str, fingerprint: str) -> StoredAnswer | None:
        """A copy of the answer already given to ``key``, or ``None`` for a new key.

        Raises ``ApiError`` for a key over 255 characters, or one first used with
        other params (``idempotency_error``), as Stripe does.
        """
        if len(key) > MAX_KEY_LENGTH:
            raise invalid("Idempotency keys can be at most 255 characters long.",
                          "Idempotency-Key")
        stored = self._answers.get(key)
        if stored is None:
            return None
        if stored.fingerprint != fingerprint:
            raise ApiError(
                "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with. Try using a key other than "
                f"'{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        return StoredAnswer(stored.fingerprint, stored.status, copy.deepcopy(stored.body))

    def save(self, key: str, fingerprint: str, status: int, body: dict[str, Any]) -> None:
        """Remember (a copy of) the answer to ``key``."""
        self._answers[key] = StoredAnswer(fingerprint, status, copy.deepcopy(body))
