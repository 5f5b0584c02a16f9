"""What the other sandbox modules hear about payments that finish later.

A PaymentIntent or SetupIntent can change outcome after the call that started it: a bank
debit settles when the clock passes its settlement time, a 3-D Secure challenge is completed
through the test helper or the hosted page, a customer confirms an invoice's PaymentIntent
again. Modules that care (billing: invoices, checkout sessions) register a listener with
`on_intent_outcome`; it is called under the state lock, after the events were emitted.

Outcomes reached inside `pay()`/`set_up()` themselves are returned to their caller, not
announced (the caller already knows).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from billfold_sandbox.state import SandboxState, StripeObject

# fn(state, intent): `intent["object"]` is "payment_intent" or "setup_intent"; its `status`
# is the new outcome (succeeded, requires_payment_method after a failure, requires_capture,
# requires_action, processing, canceled).
IntentListener = Callable[[SandboxState, StripeObject], None]

_listeners: list[IntentListener] = []
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("payments_quiet", default=False)


def on_intent_outcome(fn: IntentListener) -> IntentListener:
    """Register `fn(state, intent)` for outcomes reached outside `pay()`/`set_up()`."""
    if fn not in _listeners:
        _listeners.append(fn)
    return fn


def announce(state: SandboxState, intent: StripeObject) -> None:
    """Tell the listeners about an intent's new outcome (unless inside pay()/set_up())."""
    if _quiet.get():
        return
    for listener in list(_listeners):
        listener(state, intent)


@contextmanager
def quietly() -> Iterator[None]:
    """Outcomes reached in this block are the caller's return value, not announcements."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


def require_action(state: SandboxState, intent: StripeObject, next_action: dict[str, Any]) -> None:
    """Park an intent in `requires_action` (3-D Secure, microdeposits) and say so."""
    previous = state.update(intent, {"status": "requires_action", "next_action": next_action})
    state.emit(f"{intent['object']}.requires_action", intent, previous)
    announce(state, intent)
