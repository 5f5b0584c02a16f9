"""Putting a burst of events in Stripe's order.

Creating a subscription through the API charges its first invoice before Stripe announces the
subscription, yet Stripe sends `customer.subscription.created` (with the final status) before
the invoice events. `held_events` records the events emitted inside it and sends them on exit,
the held ones moved to the front.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from billfold_sandbox.state import SandboxState, StripeObject


@dataclass
class HeldEvents:
    """Events emitted while held: (type, object, previous_attributes)."""

    emitted: list[tuple[str, StripeObject, dict[str, Any] | None]] = field(default_factory=list)
    first: list[tuple[str, StripeObject, dict[str, Any] | None]] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)

    def lead_with(
        self, event_type: str, obj: StripeObject, previous: dict[str, Any] | None = None
    ) -> None:
        """Send this event first, with `obj` as it is when the hold ends."""
        self.first.append((event_type, obj, previous))

    def drop_about(self, object_id: str) -> None:
        """Send nothing about this object (it was never really created)."""
        self.dropped.add(object_id)


@contextmanager
def held_events(state: SandboxState) -> Iterator[HeldEvents]:
    """Hold `state.emit` calls (snapshots taken at once) and send them on exit."""
    held = HeldEvents()
    original = state.emit

    def hold(
        event_type: str, obj: StripeObject, previous_attributes: dict[str, Any] | None = None
    ) -> StripeObject:
        snapshot: StripeObject = state.render(obj)
        held.emitted.append((event_type, snapshot, previous_attributes))
        return snapshot

    nested = "emit" in vars(state)
    with state.lock:
        state.emit = hold  # type: ignore[method-assign]
        try:
            yield held
        finally:
            if nested:
                state.emit = original  # type: ignore[method-assign]
            else:
                del state.emit  # back to the class's method
            for event_type, obj, previous in held.first:
                if obj.get("id") not in held.dropped:
                    original(event_type, obj, previous)
            for event_type, snapshot, previous in held.emitted:
                if snapshot.get("id") not in held.dropped:
                    original(event_type, snapshot, previous)
