"""Products: ``/v1/products`` (create, retrieve, list) and the product factory.

Handlers take the shared :class:`~.state.StripeState` and the :class:`~.routes.ApiCall`
being served, and return the JSON object to answer with; the state's routes table
maps URLs to them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from stripe import Product

from .errors import ApiError, missing, no_such
from .ids import new_id
from .lists import list_object
from .params import as_bool, as_list, as_metadata, as_str
from .shapes import blank, declared, shaped

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "create_product",
    "list_products",
    "new_product",
    "retrieve_product",
]

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


def create_product(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    if "name" not in params:
        raise missing("name")
    product_id = None
    if "id" in params:
        product_id = as_str(params["id"], "id")
        if product_id in state.products:
            raise ApiError("Product already exists.", param="id",
                           code="resource_already_exists")
    product = new_product(
        state,
        as_str(params["name"], "name"),
        product_id=product_id,
        description=(as_str(params["description"], "description")
                     if "description" in params else None),
        active=as_bool(params.get("active", "true"), "active"),
        metadata=as_metadata(params.get("metadata", {}), "metadata"),
        images=[as_str(v, "images") for v in as_list(params.get("images", []), "images")],
    )
    fields = declared(Product)
    product.update({name: shaped(fields[name], value) for name, value in call.valid.items()
                    if name in fields and name not in _SET_ABOVE})
    if "default_price_data" in call.valid:
        # Imported here: prices imports this module for the products prices create.
        from .prices import new_price

        data = call.valid["default_price_data"]
        price = new_price(state, unit_amount=data.get("unit_amount", 0),
                          currency=data["currency"], product=product["id"],
                          recurring=data.get("recurring"),
                          metadata=data.get("metadata"))
        product["default_price"] = price["id"]
    return copy.deepcopy(product)


_SET_ABOVE = frozenset({"id", "name", "description", "active", "metadata", "images",
                        "default_price_data", "expand"})


def retrieve_product(state: StripeState, call: ApiCall) -> dict[str, Any]:
    product_id = call.ids[0]
    if product_id not in state.products:
        raise no_such("product", product_id)
    return copy.deepcopy(state.products[product_id])


def list_products(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    products = list(reversed(state.products.values()))
    if "active" in params:
        active = as_bool(params["active"], "active")
        products = [p for p in products if p["active"] == active]
    return list_object(products, "/v1/products", params)
