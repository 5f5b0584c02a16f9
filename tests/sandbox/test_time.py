"""Test clocks, the sandbox-wide clock, timers and time hooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.routing import SandboxRouter
from billfold_sandbox.state import SandboxState, Timer, TimerQueue
from tests.sandbox.billing_support import events, last_event_id, subscribed
from tests.sandbox.shapes import assert_stripe_shape
from tests.sandbox_fixtures import SandboxServer, ServedApp

T0 = 1_800_000_000
DAY = 86400


def test_test_clock_lifecycle(stripe_client: stripe.StripeClient) -> None:
    clock = stripe_client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": T0, "name": "renewals"}
    )
    assert clock.id.startswith("clock_")
    assert clock.status == "ready"
    assert_stripe_shape(clock, "test_helpers.test_clock")
    customer = stripe_client.v1.customers.create(
        params={"email": "clock@example.com", "test_clock": clock.id}
    )
    assert customer.test_clock == clock.id
    assert customer.created == T0

    advancing = stripe_client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": T0 + 31 * DAY}
    )
    assert advancing.status == "advancing"
    ready = stripe_client.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert ready.status == "ready"
    assert ready.frozen_time == T0 + 31 * DAY
    later = stripe_client.v1.customers.create(
        params={"email": "later@example.com", "test_clock": clock.id}
    )
    assert later.created == T0 + 31 * DAY

    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0})
    assert info.value.param == "frozen_time"
    types = [e.type for e in stripe_client.v1.events.list(params={"type": "test_helpers.*"}).data]
    assert types == [
        "test_helpers.test_clock.ready",
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.created",
    ]
    assert [c.id for c in stripe_client.v1.test_helpers.test_clocks.list().data] == [clock.id]

    deleted = stripe_client.v1.test_helpers.test_clocks.delete(clock.id)
    assert deleted.deleted is True
    assert stripe_client.v1.customers.retrieve(customer.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.create(params={"test_clock": clock.id})


@pytest.fixture
def hooked() -> Iterator[tuple[stripe.StripeClient, SandboxState, list[tuple[str, object]]]]:
    """A sandbox with a test module: a monthly 'renewal' timer and a time hook that logs."""
    log: list[tuple[str, object]] = []
    router = SandboxRouter()

    @router.timer("test.renew")
    def renew(state: SandboxState, timer: Timer) -> None:
        customer = state.require("customer", timer.object_id)
        log.append(("renew", state.now_for(customer)))
        state.emit("customer.updated", customer)
        count = (timer.data or {}).get("left", 0)
        if count > 1:
            state.schedule(
                timer.at + 30 * DAY,
                "test.renew",
                timer.object_id,
                clock_id=timer.clock_id,
                data={"left": count - 1},
            )

    @router.time_hook
    def hook(state: SandboxState, clock_id: str | None, from_ts: int, to_ts: int) -> None:
        log.append(("hook", (from_ts, to_ts)))

    state = SandboxState()
    router.install(state)
    served = ServedApp(create_sandbox_app(state))
    client = stripe.StripeClient(
        "sk_test_hooks", base_addresses={"api": served.url}, max_network_retries=0
    )
    try:
        yield client, state, log
    finally:
        served.stop()


def test_timers_and_hooks_run_in_time_order(
    hooked: tuple[stripe.StripeClient, SandboxState, list[tuple[str, object]]],
) -> None:
    client, state, log = hooked
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    customer = client.v1.customers.create(params={"test_clock": clock.id})
    state.schedule(T0 + 30 * DAY, "test.renew", customer.id, clock_id=clock.id, data={"left": 3})

    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 75 * DAY})

    assert log == [
        ("hook", (T0, T0 + 30 * DAY)),
        ("renew", T0 + 30 * DAY),
        ("hook", (T0 + 30 * DAY, T0 + 60 * DAY)),
        ("renew", T0 + 60 * DAY),
        ("hook", (T0 + 60 * DAY, T0 + 75 * DAY)),
    ]
    # The renewal scheduled during the advance (third) waits for the next one.
    assert [t.at for t in state.pending_timers(customer.id)] == [T0 + 90 * DAY]
    updates = client.v1.events.list(params={"type": "customer.updated"}).data
    assert sorted(e.created for e in updates) == [T0 + 30 * DAY, T0 + 60 * DAY]
    assert all(e.request.id is None for e in updates)  # not caused by an API request

    state.cancel_timers(customer.id)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 100 * DAY})
    assert [entry for entry in log if entry[0] == "renew"] == [
        ("renew", T0 + 30 * DAY),
        ("renew", T0 + 60 * DAY),
    ]


def test_sandbox_wide_clock(
    hooked: tuple[stripe.StripeClient, SandboxState, list[tuple[str, object]]],
) -> None:
    client, state, log = hooked
    customer = client.v1.customers.create(params={"email": "wall@example.com"})
    start = state.now()
    state.schedule(start + 10 * DAY, "test.renew", customer.id)
    moved = client.raw_request("post", "/v1/test_helpers/sandbox/clock/advance", seconds=20 * DAY)
    assert moved.code == 200
    assert state.now() >= start + 20 * DAY
    assert ("renew", start + 10 * DAY) in log
    later = client.v1.customers.create(params={"email": "future@example.com"})
    assert later.created >= start + 20 * DAY


def test_advance_in_process_helper(
    sandbox_server: SandboxServer, stripe_client: stripe.StripeClient
) -> None:
    clock = stripe_client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    sandbox_server.advance_clock(clock.id, T0 + DAY)
    assert stripe_client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == T0 + DAY


def test_test_clock_for_an_existing_customer(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "existing@example.com"})
    clock = stripe_client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": T0, "customer": customer.id}
    )
    assert stripe_client.v1.customers.retrieve(customer.id).test_clock == clock.id
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.test_helpers.test_clocks.create(
            params={"frozen_time": T0, "customer": customer.id}
        )
    assert info.value.param == "customer"


def test_deleting_a_clock_deletes_its_customers_as_deleting_them_would(
    stripe_client: stripe.StripeClient, sandbox_server: SandboxServer
) -> None:
    """As on Stripe, deleting a test clock deletes the customers on it: their subscriptions
    are canceled (`customer.subscription.deleted`), their payment methods detached, each
    customer deleted (`customer.deleted`), then `test_helpers.test_clock.deleted`."""
    _, who, sub = subscribed(stripe_client)
    assert sub.status == "active"
    idle = stripe_client.v1.customers.create(params={"test_clock": who.clock})
    elsewhere = stripe_client.v1.customers.create(params={"email": "no-clock@example.com"})
    since = last_event_id(stripe_client)
    assert sandbox_server.state.pending_timers(sub.id)

    deleted = stripe_client.v1.test_helpers.test_clocks.delete(who.clock)
    assert deleted.deleted is True

    ended = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled"
    assert ended.cancellation_details.reason == "cancellation_requested"
    assert stripe_client.v1.payment_methods.retrieve(str(who.payment_method)).customer is None
    for customer_id in (who.customer, idle.id):
        assert stripe_client.v1.customers.retrieve(customer_id).deleted is True
    assert "deleted" not in stripe_client.v1.customers.retrieve(elsewhere.id)
    assert [t for t in sandbox_server.state.pending_timers() if t.clock_id == who.clock] == []

    after = events(stripe_client, since=since)
    types = [e.type for e in after]
    assert sorted(types) == sorted(
        [
            "customer.subscription.deleted",
            "payment_method.detached",
            "customer.deleted",
            "customer.deleted",
            "test_helpers.test_clock.deleted",
        ]
    )
    assert types.index("customer.subscription.deleted") < types.index("customer.deleted")
    assert types[-1] == "test_helpers.test_clock.deleted"
    assert {e.data.object.id for e in after if e.type == "customer.deleted"} == {
        who.customer,
        idle.id,
    }
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.test_helpers.test_clocks.retrieve(who.clock)
    assert info.value.code == "resource_missing"


_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("schedule"),
            st.integers(0, 50),  # at
            st.sampled_from(["a.renew", "a.retry"]),
            st.sampled_from(["sub_1", "sub_2", "in_1", "in_2", "in_3"]),
            st.sampled_from([None, "clock_a", "clock_b"]),
        ),
        st.tuples(
            st.just("cancel"),
            st.sampled_from(["sub_1", "sub_2", "in_1", "in_2", "in_3"]),
            st.sampled_from([None, "a.renew", "a.retry"]),
        ),
        st.tuples(
            st.just("pop"), st.sampled_from([None, "clock_a", "clock_b"]), st.integers(0, 50)
        ),
        st.tuples(st.just("drop_clock"), st.sampled_from([None, "clock_a", "clock_b"])),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS)
def test_timer_queue_matches_a_sorted_list(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the mix of scheduling, cancelling (tombstones, compaction) and firing, the
    queue gives what scanning a plain list would: the earliest due timer of the clock."""
    queue, model, seq = TimerQueue(compact_at_least=2), list[Timer](), 0  # compacts often
    for op in ops:
        if op[0] == "schedule":
            seq += 1
            timer = Timer(op[1], seq, op[2], op[3], op[4])
            queue.push(timer)
            model.append(timer)
        elif op[0] == "cancel":
            gone = [t for t in model if t.object_id == op[1] and op[2] in (None, t.kind)]
            model = [t for t in model if t not in gone]
            assert queue.cancel(op[1], op[2]) == len(gone)
        elif op[0] == "pop":
            due = [t for t in model if t.clock_id == op[1] and t.at <= op[2]]
            expected = min(due) if due else None
            assert queue.pop_due(op[1], op[2]) == expected
            if expected is not None:
                model.remove(expected)
        else:
            gone = [t for t in model if t.clock_id == op[1]]
            model = [t for t in model if t.clock_id != op[1]]
            assert queue.cancel_clock(op[1]) == len(gone)
        assert len(queue) == len(model)
        assert sorted(queue) == sorted(model)
        for clock_id in (None, "clock_a", "clock_b"):
            mine = [t.at for t in model if t.clock_id == clock_id]
            assert queue.next_at(clock_id) == (min(mine) if mine else None)
    assert sorted(TimerQueue(list(queue))) == sorted(model)  # as reloaded from a file


def test_a_time_hook_may_cancel_a_timer_that_is_due() -> None:
    """Hooks run for the stretch up to a timer before it fires; one that cancels that timer
    (a scan that ends the subscription first) means the timer does not fire."""
    state = SandboxState()
    fired: list[str] = []
    state.register_timer("a.renew", lambda s, timer: fired.append(timer.object_id))

    def hook(s: SandboxState, clock_id: str | None, from_ts: int, to_ts: int) -> None:
        if to_ts >= T0 + 10:
            s.cancel_timers("sub_1")

    state.register_time_hook(hook)
    state.insert({"id": "clock_h", "object": "test_helpers.test_clock", "frozen_time": T0})
    state.schedule(T0 + 10, "a.renew", "sub_1", clock_id="clock_h")
    state.schedule(T0 + 20, "a.renew", "sub_2", clock_id="clock_h")
    state.run_forward("clock_h", T0 + 30)
    assert fired == ["sub_2"]
    assert state.pending_timers() == []
