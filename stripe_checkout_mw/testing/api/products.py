"""Products: ``/v1/products`` (create, retrieve, list).

Handlers take the shared :class:`~.state.StripeState` and the :class:`~.routes.ApiCall`
being served, and return the JSON object to answer with; the state's routes table
maps URLs to them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from stripe import Product

from .errors import ApiError, missing, no_such
from .lists import list_object
from .params import as_bool, as_list, as_metadata, as_str
from .prices import new_price
from .product_objects import new_product
from .shapes import declared, shaped

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "create_product",
    "list_products",
    "new_product",
    "retrieve_product",
]

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
