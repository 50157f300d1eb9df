"""The product factory: a stored product from already validated values.

Apart from the ``/v1/products`` handlers because prices create products too (a price's
``product_data``) and products create prices (``default_price_data``): both import this
module, and neither imports the other back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stripe import Product

from .ids import new_id
from .shapes import blank

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["new_product"]


def new_product(
    state: StripeState,
    name: str,
    *,
    product_id: str | None = None,
    description: str | None = None,
    active: bool = True,
    metadata: dict[str, str] | None = None,
    images: list[str] | None = None,
) -> dict[str, Any]:
    """Store a new product (not a copy) from already validated values."""
    now = state.now()
    ident = product_id or new_id("prod_", 14)
    product = blank(Product)
    product.update({
        "id": ident,
        "object": "product",
        "active": active,
        "created": now,
        "default_price": None,
        "description": description,
        "images": images or [],
        "livemode": False,
        "marketing_features": [],
        "metadata": metadata or {},
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": now,
        "url": None,
    })
    state.products[ident] = product
    return product
