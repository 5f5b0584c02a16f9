"""The sandbox inside `billfold serve` when no Stripe key is set (settings.sandbox_mode)."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from billfold.config import (
    SANDBOX_MOUNT_PATH,
    SANDBOX_SECRET_KEY,
    SANDBOX_WEBHOOK_SECRET,
    Settings,
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    from billfold_sandbox.state import SandboxState

WEBHOOK_PATH = "/api/v1/payments/webhook"
BILLFOLD_ENDPOINT_ID = "we_billfold_local"


class EmbeddedSandbox:
    """The sandbox mounted in billfold, built (imported, its state file read, billfold's endpoint
    registered) by the first request under its path or the first call of `state()`, not at
    start. In `billfold serve` that is the catalog sync, which starts once the server listens;
    a request arriving while it is built waits for it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._app: ASGIApp | None = None
        self._state: SandboxState | None = None

    def state(self) -> SandboxState:
        """The sandbox's state (built now if it was not). Blocking: reads the state file."""
        self._build()
        assert self._state is not None
        return self._state

    def _build(self) -> ASGIApp:
        with self._lock:
            if self._app is None:
                # Imported here: a billfold talking to real Stripe never loads the sandbox.
                from billfold_sandbox.app import create_sandbox_app
                from billfold_sandbox.state import SandboxState

                settings = self._settings
                state = SandboxState(
                    settings.data_dir / "sandbox.json", api_keys={SANDBOX_SECRET_KEY}
                )
                ensure_billfold_endpoint(state, settings.base_url + WEBHOOK_PATH)
                self._state = state
                self._app = create_sandbox_app(state)
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            app = await asyncio.to_thread(self._build)  # it reads files: off the event loop
        await app(scope, receive, send)


def mount_sandbox(app: FastAPI, settings: Settings) -> EmbeddedSandbox | None:
    """Mount the sandbox at SANDBOX_MOUNT_PATH (sandbox mode only), built on first use, with
    billfold's own webhook route registered as an endpoint signed with SANDBOX_WEBHOOK_SECRET.
    State persists in `{data_dir}/sandbox.json`. Returns it (also `app.state.sandbox`; None
    outside sandbox mode). Never in production: there the sandbox and its test helpers answer
    404."""
    if not settings.sandbox_mode or settings.environment == "production":
        return None
    sandbox = EmbeddedSandbox(settings)
    app.mount(SANDBOX_MOUNT_PATH, sandbox)
    app.state.sandbox = sandbox
    return sandbox


def ensure_billfold_endpoint(state: SandboxState, url: str) -> None:
    """The endpoint delivering every event to billfold (kept current across restarts)."""
    with state.lock:
        existing = state.get("webhook_endpoint", BILLFOLD_ENDPOINT_ID)
        if existing is not None and not existing.get("deleted"):
            state.update(
                existing,
                {"url": url, "_secret": SANDBOX_WEBHOOK_SECRET, "status": "enabled"},
            )
            return
        if existing is not None:
            state.remove("webhook_endpoint", BILLFOLD_ENDPOINT_ID)
        state.webhooks.add_endpoint(
            url,
            enabled_events=["*"],
            secret=SANDBOX_WEBHOOK_SECRET,
            description="billfold (registered automatically in sandbox mode)",
            endpoint_id=BILLFOLD_ENDPOINT_ID,
        )
