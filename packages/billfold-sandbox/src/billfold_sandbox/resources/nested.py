"""A helper for routes of objects that live under another (`/v1/customers/{customer}/tax_ids/{id}`):
not a resource module (it has no router)."""

from __future__ import annotations

from billfold_sandbox.errors import resource_missing
from billfold_sandbox.routing import Call
from billfold_sandbox.state import StripeObject


def require_nested(
    call: Call, parent: tuple[str, str], child: tuple[str, str], owner_field: str
) -> StripeObject:
    """The child object named by path key `child[1]` (type `child[0]`) that belongs to the
    parent named by path key `parent[1]` (type `parent[0]`, checked first: 404 on either)."""
    parent_type, parent_key = parent
    child_type, child_key = child
    call.require(parent_type, call.path[parent_key], param=parent_key)
    found = call.state.get(child_type, call.path[child_key])
    if found is None or found[owner_field] != call.path[parent_key]:
        raise resource_missing(child_type, call.path[child_key])
    return found
