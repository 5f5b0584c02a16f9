"""The sandbox inside `billfold serve` when no Stripe key is set (settings.sandbox_mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from billfold.config import (
    SANDBOX_MOUNT_PATH,
    SANDBOX_SECRET_KEY,
    SANDBOX_WEBHOOK_SECRET,
    Settings,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from billfold_sandbox.state import SandboxState

WEBHOOK_PATH = "/api/v1/payments/webhook"
BILLFOLD_ENDPOINT_ID = "we_billfold_local"


def mount_sandbox(app: FastAPI, settings: Settings) -> SandboxState | None:
    """Mount the sandbox at SANDBOX_MOUNT_PATH (sandbox mode only) and register billfold's own
    webhook route as an endpoint signed with SANDBOX_WEBHOOK_SECRET. State persists in
    `{data_dir}/sandbox.json`. Returns the sandbox state (None outside sandbox mode). Never in
    production: there the sandbox and its test helpers answer 404."""
    if not settings.sandbox_mode or settings.environment == "production":
        return None
    # Imported here: a billfold talking to real Stripe never loads the sandbox.
    from billfold_sandbox.app import create_sandbox_app
    from billfold_sandbox.state import SandboxState

    state = SandboxState(settings.data_dir / "sandbox.json", api_keys={SANDBOX_SECRET_KEY})
    ensure_billfold_endpoint(state, settings.base_url + WEBHOOK_PATH)
    app.mount(SANDBOX_MOUNT_PATH, create_sandbox_app(state))
    app.state.sandbox = state
    return state


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
