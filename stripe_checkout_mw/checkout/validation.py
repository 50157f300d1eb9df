"""Checking the order a browser sends before anything is priced or sent to Stripe.

The default validator enforces the seed's contract (``line_items`` and
``customer_email``) and nothing looser: every field has a type and a bound, and a field
it does not know is refused rather than silently forwarded. A shop with other needs
passes its own callable::

    def validator(body: dict, environ: dict) -> dict:
        order = DefaultValidator()(body, environ)
        if not order["customer_email"].endswith("@example.com"):
            raise ValidationError("Staff only.", param="customer_email")
        return order

    CheckoutMiddleware(app, validator=validator, ...)

A validator returns the cleaned order ``{"line_items": [...], "customer_email": ...}``
or raises :class:`ValidationError`, which the middleware answers with a 400.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

Validator = Callable[[dict[str, Any], "WSGIEnvironment"], dict[str, Any]]

#: Stripe's own ceilings on a cart: 100 line items a payment session; a subscription takes
#: 20 recurring plus 20 one-time ones (that split is checked once the items are priced).
MAX_ITEMS = {"payment": 100, "subscription": 40}
_ITEM_FIELDS = frozenset({"price", "price_data", "quantity"})
_TOP_FIELDS = frozenset({"line_items", "customer_email"})
# Deliberately plain: one @, no spaces or controls, a dot in the domain. Stripe checks
# deliverability; this only keeps obvious garbage away from it.
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+")
_MAX_KEY_LENGTH = 200


class ValidationError(ValueError):
    """The order is not acceptable; the message is shown to the customer as is.

    :param message: what is wrong, in words a shopper or front-end developer can act on.
    :param param: the field at fault, in Stripe's bracket notation
        (``line_items[2][quantity]``), or ``None``.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def check_total(
    amounts: list[tuple[int | None, object]], *, allow_free: bool = False
) -> None:
    """Refuse an order whose total is 0, unless the shop gives things away on purpose.

    :param amounts: ``(unit_amount, quantity)`` per priced item; an amount of None (a
        Stripe price whose amount is not known here) is taken to be charged.
    """
    if allow_free:
        return
    if all(
        amount is not None and (amount == 0 or quantity == 0) for amount, quantity in amounts
    ):
        raise ValidationError("This order's total is 0; the shop takes no free orders.",
                              param="line_items")


class DefaultValidator:
    """The seed's rules, bounded.

    :param require_email: refuse orders without ``customer_email`` (the seed did).
    :param max_quantity: the largest quantity of one line item.
    :param max_items: the most line items one order may hold (Stripe allows 100 in
        payment mode and 20 recurring plus 20 one-time items in subscription mode).
    """

    def __init__(
        self, *, require_email: bool = False, max_quantity: int = 999, max_items: int = 100
    ) -> None:
        self.require_email = require_email
        self.max_quantity = max_quantity
        self.max_items = max_items

    def __call__(self, body: dict[str, Any], environ: WSGIEnvironment) -> dict[str, Any]:
        for key in body:
            if key not in _TOP_FIELDS:
                raise ValidationError(f"Unknown field {str(key)[:40]!r}.", param=str(key)[:40])
        return {
            "line_items": self._line_items(body.get("line_items")),
            "customer_email": self._email(body.get("customer_email")),
        }

    def _line_items(self, items: object) -> list[dict[str, Any]]:
        if not isinstance(items, list) or not items:
            raise ValidationError("line_items must be a non-empty list.", param="line_items")
        if len(items) > self.max_items:
            raise ValidationError(
                f"An order may hold at most {self.max_items} line items.", param="line_items"
            )
        return [self._line_item(item, f"line_items[{i}]") for i, item in enumerate(items)]

    def _line_item(self, item: object, where: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise ValidationError("Each line item must be an object.", param=where)
        for key in item:
            if key not in _ITEM_FIELDS:
                raise ValidationError(
                    f"Unknown line item field {str(key)[:40]!r}.", param=f"{where}[{str(key)[:40]}]"
                )
        quantity = item.get("quantity")
        # bool is an int in Python; JSON true is not a quantity.
        if type(quantity) is not int or not 1 <= quantity <= self.max_quantity:
            raise ValidationError(
                f"quantity must be a whole number from 1 to {self.max_quantity}.",
                param=f"{where}[quantity]",
            )
        has_price, has_data = "price" in item, "price_data" in item
        if has_price == has_data:
            raise ValidationError(
                "Each line item needs exactly one of price and price_data.", param=where
            )
        if has_price:
            price = item["price"]
            if not isinstance(price, str) or not 0 < len(price) <= _MAX_KEY_LENGTH:
                raise ValidationError("price must be a non-empty string.", param=f"{where}[price]")
            return {"price": price, "quantity": quantity}
        if not isinstance(item["price_data"], dict):
            raise ValidationError("price_data must be an object.", param=f"{where}[price_data]")
        return {"price_data": item["price_data"], "quantity": quantity}

    def _email(self, email: object) -> str | None:
        if email is None or email == "":
            if self.require_email:
                raise ValidationError("customer_email is required.", param="customer_email")
            return None
        if not isinstance(email, str) or len(email) > 254 or not _EMAIL.fullmatch(email):
            raise ValidationError("customer_email is not a valid email address.",
                                  param="customer_email")
        return email
