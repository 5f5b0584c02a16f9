"""Dropping timers cheaply: most objects have none pending, and the state's `cancel_timers`
rebuilds the whole timer heap, so look first."""

from __future__ import annotations

from billfold.sandbox.state import SandboxState


def drop(state: SandboxState, object_id: str, kind: str | None = None) -> None:
    """Cancel the pending timers of an object (of one kind, or all), if there are any."""
    with state.lock:
        if any(t.object_id == object_id and (kind is None or t.kind == kind) for t in state.timers):
            state.cancel_timers(object_id, kind)
