"""The API's front door: from an HTTP request to a rendered Stripe answer.

Like moto's ``responses.py``, :class:`ApiDoor` decodes what came over the wire
(query string and form body, the ``Authorization`` and ``Idempotency-Key``
headers), records it, lets an injected fault answer first, checks the key, hands
the decoded request to :meth:`~.api.state.StripeState.handle` and renders the
result or the :class:`~.api.errors.ApiError` as Stripe's JSON with its
``Request-Id`` and ``Stripe-Version`` headers.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from .api import API_VERSION, ApiError, new_id
from .faults import FaultQueue, fault_response
from .forms import FormError, decode_form
from .request_log import RecordedRequest, RequestLog
from .server import HttpRequest, HttpResponse, json_response

if TYPE_CHECKING:
    from .api import StripeState

__all__ = ["ApiDoor", "authenticate"]

logger = logging.getLogger("stripe_checkout_mw.testing")

_FORM = "application/x-www-form-urlencoded"


class ApiDoor:
    """Serves every request under ``/v1``.

    :param lock: the emulator's lock.
    :param state: the objects the API serves.
    :param log: where each request is recorded.
    :param faults: the injected faults, taken before a request is handled.
    :param stopping: set when the server stops; cuts injected delays short.
    :param secret_key: returns the emulator's secret key at request time.
    :param accept_any_test_key: returns whether any ``sk_test_`` key will do.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        state: StripeState,
        log: RequestLog,
        faults: FaultQueue,
        stopping: threading.Event,
        secret_key: Callable[[], str],
        accept_any_test_key: Callable[[], bool],
    ) -> None:
        self._lock = lock
        self._state = state
        self._log = log
        self._faults = faults
        self._stopping = stopping
        self._secret_key = secret_key
        self._accept_any_test_key = accept_any_test_key

    def handle(self, request: HttpRequest, path: str, query: str) -> HttpResponse:
        """Answer one API request; ``path`` and ``query`` are the split target."""
        request_id = new_id("req_", 14)
        record = RecordedRequest(request.method, path, query, request.headers, {},
                                 request.body, time.time(), request_id)
        headers = [("Request-Id", request_id), ("Stripe-Version", API_VERSION)]
        key = request.headers.get("idempotency-key")
        if key is not None and request.method == "POST":
            headers.append(("Idempotency-Key", key))
        params, form_error = _decode_params(request, query)
        if form_error is None:
            record.params = params
        # One lock for both, so the log's order is the order faults were taken in.
        with self._lock:
            self._log.add(record)
            fault = self._faults.take(request.method, path)
        if fault is not None:
            response = fault_response(fault, headers, self._stopping)
            if response is not None:
                return self._finish(record, response, fault=True)
        try:
            self._check(request, form_error)
            result = self._state.handle(request.method, path, params,
                                        idempotency_key=key, request_id=request_id)
        except ApiError as exc:
            return self._finish(record, json_response(exc.status, exc.body(request_id),
                                                      headers))
        return self._finish(record, json_response(result.status, result.body,
                                                  [*headers, *result.headers]))

    def _check(self, request: HttpRequest, form_error: ApiError | None) -> None:
        """Refuse, in Stripe's order: the key, then the form, then its content type."""
        authenticate(request.headers.get("authorization"), secret_key=self._secret_key(),
                     accept_any_test_key=self._accept_any_test_key())
        if form_error is not None:
            raise form_error
        if request.method == "POST" and request.body and not request.headers.get(
            "content-type", _FORM
        ).startswith(_FORM):
            raise ApiError("Invalid request: the body must be "
                           "application/x-www-form-urlencoded.")

    def _finish(self, record: RecordedRequest, response: HttpResponse,
                fault: bool = False) -> HttpResponse:
        self._log.answered(record, response.status, fault=fault)
        logger.info("%s %s -> %s%s", record.method, record.path, response.status,
                    " (injected)" if fault else "")
        return response


def _decode_params(request: HttpRequest,
                   query: str) -> tuple[dict[str, Any], ApiError | None]:
    """The query string's params overlaid with a POST body's; or the form's error."""
    try:
        params = decode_form(query) if query else {}
        if request.method == "POST" and request.body:
            # The body wins over the query string, as it does at Stripe.
            params.update(decode_form(request.body))
    except FormError as exc:
        return {}, ApiError(exc.message, param=exc.param or None)
    return params, None


def authenticate(header: str | None, *, secret_key: str, accept_any_test_key: bool) -> None:
    """Check an ``Authorization`` header (Bearer or Basic) as Stripe does.

    Raises the 401 ``ApiError`` Stripe answers for a missing, malformed or (unless
    ``accept_any_test_key``) other key; a live key gets ``api_key_invalid``.
    """
    if not header:
        raise ApiError(
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
            "details, or we can help at https://support.stripe.com/.",
            status=401,
        )
    scheme, _, credentials = header.partition(" ")
    key = credentials.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key).decode("utf-8").partition(":")[0]
        except ValueError:
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    valid = key.startswith("sk_test_") and len(key) > len("sk_test_")
    if valid and not accept_any_test_key:
        valid = secrets.compare_digest(key, secret_key)
    if not valid:
        shown = f"{key[:8]}****{key[-4:]}" if len(key) > 12 else "****"
        raise ApiError(f"Invalid API Key provided: {shown}", status=401,
                       code="api_key_invalid" if key.startswith("sk_live_") else None)
