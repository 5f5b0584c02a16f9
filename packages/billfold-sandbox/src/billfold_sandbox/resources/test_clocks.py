"""Test clocks: create, retrieve, list, delete, advance (runs the customer's world forward)."""

from __future__ import annotations

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import integer, string
from billfold_sandbox.resources.customers import delete_customer
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState, StripeObject

router = SandboxRouter()

CLOCK = "test_helpers.test_clock"
DELETES_AFTER = 30 * 86400


def advance_test_clock(state: SandboxState, clock: StripeObject, to_ts: int) -> StripeObject:
    """Move a test clock to `to_ts`: timers and time hooks run in time order; the clock goes
    `advancing` then `ready`, with the matching events. Returns the clock as it was while
    advancing (what Stripe answers the advance call with)."""
    with state.lock:
        if to_ts <= clock["frozen_time"]:
            raise invalid_request(
                "The frozen_time must be after the test clock's current frozen time.",
                param="frozen_time",
            )
        previous = state.update(
            clock,
            {"status": "advancing", "status_details": {"advancing": {"target_frozen_time": to_ts}}},
        )
        advancing = state.render(clock)
        state.emit("test_helpers.test_clock.advancing", clock, previous)
        try:
            state.run_forward(clock["id"], to_ts)
        finally:
            previous = state.update(
                clock, {"frozen_time": to_ts, "status": "ready", "status_details": {}}
            )
            state.update(clock, {"deletes_after": to_ts + DELETES_AFTER})
        state.emit("test_helpers.test_clock.ready", clock, previous)
        assert isinstance(advancing, dict)
        return advancing


@router.post(
    "/v1/test_helpers/test_clocks",
    {"frozen_time": integer(required=True), "name": string(max_length=300), "customer": string()},
)
def create_test_clock(call: Call) -> StripeObject:
    p = call.params
    customer = (
        call.require("customer", p["customer"], param="customer") if "customer" in p else None
    )
    if customer is not None and customer.get("test_clock"):
        raise invalid_request(
            "This customer is already attached to a test clock.", param="customer"
        )
    clock: StripeObject = {
        "id": call.state.new_id("clock"),
        "object": CLOCK,
        "created": call.now(),
        "deletes_after": p["frozen_time"] + DELETES_AFTER,
        "frozen_time": p["frozen_time"],
        "livemode": False,
        "name": p.get("name"),
        "status": "ready",
        "status_details": {},
    }
    call.state.insert(clock)
    call.emit("test_helpers.test_clock.created", clock)
    if customer is not None:
        # "Existing customer this test clock will be attached to" (it cannot be removed).
        previous = call.state.update(customer, {"test_clock": clock["id"]})
        call.emit("customer.updated", customer, previous)
    return clock


@router.get("/v1/test_helpers/test_clocks/{id}")
def retrieve_test_clock(call: Call) -> StripeObject:
    return call.require(CLOCK, call.path["id"])


@router.get("/v1/test_helpers/test_clocks", list=True)
def list_test_clocks(call: Call) -> StripeObject:
    return call.list_response(call.state.all(CLOCK, newest_first=True))


@router.delete("/v1/test_helpers/test_clocks/{id}")
def delete_test_clock(call: Call) -> StripeObject:
    """As on Stripe, deleting a clock deletes the customers on it, each the way deleting the
    customer does (subscriptions canceled, payment methods detached, `customer.deleted`);
    whatever else still waits on the clock is dropped; then `test_helpers.test_clock.deleted`."""
    clock = call.require(CLOCK, call.path["id"])
    for customer in call.state.all("customer"):
        if customer.get("test_clock") == clock["id"]:
            delete_customer(call.state, customer)
    call.state.cancel_clock_timers(clock["id"])
    snapshot = dict(clock)
    deleted = call.state.mark_deleted(clock)
    call.emit("test_helpers.test_clock.deleted", snapshot)
    return deleted


@router.post("/v1/test_helpers/test_clocks/{id}/advance", {"frozen_time": integer(required=True)})
def advance(call: Call) -> StripeObject:
    clock = call.require(CLOCK, call.path["id"])
    if clock["status"] != "ready":
        raise invalid_request("The test clock is already advancing.", code="test_clock_not_ready")
    return advance_test_clock(call.state, clock, call.params["frozen_time"])
