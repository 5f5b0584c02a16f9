"""The loop of reserve, call Stripe, record (ARCHITECTURE.md "Calling Stripe"), shared by
Checkout starts and subscription changes.

A round reserves (or finds another request's reservation), calls Stripe under the
reservation's own idempotency key and records the answer. A request that found another's
reservation finishes it (Stripe answers the same object to the same key) and goes round; one
that has gone round `rounds` times without reaching its own gives up with a Conflict."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from billfold.errors import Conflict

T = TypeVar("T")


async def finish_own_reservation(
    rounds: int, one_round: Callable[[], Awaitable[T | None]], *, busy: str
) -> T:
    """Run `one_round` until it returns this request's own result; None from it means it
    finished (or settled) another request's reservation. Conflict(`busy`) after `rounds`."""
    for _round in range(rounds):
        own = await one_round()
        if own is not None:
            return own
    raise Conflict(busy)
