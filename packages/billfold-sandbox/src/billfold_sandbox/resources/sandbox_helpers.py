"""The sandbox's own test helper routes (not Stripe's): faults, webhook switches, the
sandbox-wide clock, waiting for deliveries, reset. Documented in the README."""

from __future__ import annotations

import anyio

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import boolean, enum, integer, number, string
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

BASE = "/v1/test_helpers/sandbox"

FAULT = {
    "path": string(required=True),
    "method": enum("GET", "POST", "DELETE", "get", "post", "delete"),
    "status": integer(min=400, max=599),
    "timeout": number(min=0, max=600),
    "count": integer(min=1),
    "rate": number(min=0, max=1),
    "after": boolean(),
}
SWITCHES = {
    "duplicate": boolean(),
    "shuffle": boolean(),
    "paused": boolean(),
    "max_attempts": integer(min=1, max=20),
    "retry_base": number(min=0, max=3600),
    "retry_cap": number(min=0, max=86400),
    "timeout": number(min=0.1, max=600),
    "seed": integer(),
}


@router.post(f"{BASE}/faults", FAULT)
def add_fault(call: Call) -> StripeObject:
    p = call.params
    if not p["path"].startswith("/v1/"):
        raise invalid_request("path must be an API path such as /v1/customers.", param="path")
    if p["path"].startswith(BASE):
        raise invalid_request("The sandbox's own helper routes cannot be faulted.", param="path")
    count = p.get("count")
    if count is None and p.get("rate") is None:
        count = 1
    fault = call.state.faults.add(
        p["path"],
        method=p.get("method"),
        status=p.get("status", 500),
        timeout=p.get("timeout"),
        count=count,
        rate=p.get("rate"),
        after=p.get("after", False),
    )
    return {"object": "sandbox.fault", **fault.to_json()}


@router.get(f"{BASE}/faults")
def list_faults(call: Call) -> StripeObject:
    data = [{"object": "sandbox.fault", **f.to_json()} for f in call.state.faults.list()]
    return {"object": "list", "data": data, "has_more": False, "url": f"{BASE}/faults"}


@router.delete(f"{BASE}/faults")
def clear_faults(call: Call) -> StripeObject:
    call.state.faults.clear()
    return {"object": "list", "data": [], "has_more": False, "url": f"{BASE}/faults"}


@router.post(f"{BASE}/webhooks", SWITCHES)
def configure_webhooks(call: Call) -> StripeObject:
    switches = call.state.webhooks.configure(**call.params)
    return {"object": "sandbox.webhook_switches", **switches}


@router.get(f"{BASE}/webhooks")
def webhook_switches(call: Call) -> StripeObject:
    return {"object": "sandbox.webhook_switches", **call.state.webhooks.switches()}


@router.post(f"{BASE}/webhooks/wait", {"timeout": number(min=0, max=600)})
async def wait_for_webhooks(call: Call) -> StripeObject:
    webhooks = call.state.webhooks
    idle = await anyio.to_thread.run_sync(webhooks.wait_idle, call.params.get("timeout", 30.0))
    return {"object": "sandbox.webhook_queue", "idle": idle, "pending": webhooks.pending()}


@router.get(f"{BASE}/webhooks/deliveries", {"event": string(), "endpoint": string()})
def list_deliveries(call: Call) -> StripeObject:
    p = call.params
    data = [
        {"object": "sandbox.webhook_delivery", **attempt}
        for attempt in list(call.state.webhooks.deliveries)
        if ("event" not in p or attempt["event"] == p["event"])
        and ("endpoint" not in p or attempt["endpoint"] == p["endpoint"])
    ]
    return {"object": "list", "data": data, "has_more": False, "url": f"{BASE}/webhooks/deliveries"}


@router.get(f"{BASE}/clock")
def sandbox_clock(call: Call) -> StripeObject:
    return {"object": "sandbox.clock", "now": call.now(), "offset": call.state.clock_offset}


@router.post(f"{BASE}/clock/advance", {"frozen_time": integer(), "seconds": integer(min=1)})
def advance_sandbox_clock(call: Call) -> StripeObject:
    p = call.params
    if ("frozen_time" in p) == ("seconds" in p):
        raise invalid_request("Pass exactly one of frozen_time or seconds.", param="seconds")
    target = p["frozen_time"] if "frozen_time" in p else call.now() + p["seconds"]
    call.state.advance_sandbox_clock(target)
    return {"object": "sandbox.clock", "now": call.now(), "offset": call.state.clock_offset}


@router.post(f"{BASE}/reset")
async def reset(call: Call) -> StripeObject:
    def reset_and_save() -> None:  # in a thread: the loop never waits on the state's lock
        call.state.reset()
        call.state.save_if_dirty()

    await anyio.to_thread.run_sync(reset_and_save)
    return {"object": "sandbox.reset", "reset": True}
