"""Events: list (filters `type` with `*` wildcards, `types[]`, `created`) and retrieve."""

from __future__ import annotations

import fnmatch

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import array, boolean, in_range, range_filter, string
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

LIST = {
    "type": string(),
    "types": array(string(), max_items=20),
    "created": range_filter(),
    "delivery_success": boolean(),
}


@router.get("/v1/events/{id}")
def retrieve_event(call: Call) -> StripeObject:
    return call.require("event", call.path["id"])


@router.get("/v1/events", LIST, list=True)
def list_events(call: Call) -> StripeObject:
    p = call.params
    if "type" in p and "types" in p:
        raise invalid_request(
            "You may only specify one of these parameters: type, types.", param="types"
        )
    patterns = [p["type"]] if "type" in p else p.get("types")
    found = [
        e
        for e in call.state.all("event", newest_first=True)
        if (patterns is None or any(fnmatch.fnmatchcase(e["type"], pat) for pat in patterns))
        and in_range(e.get("created"), p.get("created"))
        and ("delivery_success" not in p or (e["pending_webhooks"] == 0) == p["delivery_success"])
    ]
    return call.list_response(found)
