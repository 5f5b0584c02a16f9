"""Webhook endpoints: create (the `secret` is shown once), retrieve, update, delete, list."""

from __future__ import annotations

from urllib.parse import urlsplit

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import (
    anything,
    apply_metadata,
    array,
    boolean,
    metadata,
    string,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

CREATE = {
    "url": string(required=True),
    "enabled_events": array(string(), required=True, max_items=500),
    "api_version": string(),
    "connect": boolean(),
    "description": string(nullable=True),
    "metadata": metadata(),
    "connect_type": anything(),
}
UPDATE = {
    "url": string(),
    "enabled_events": array(string(), max_items=500),
    "description": string(nullable=True),
    "disabled": boolean(),
    "metadata": metadata(),
}


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_request(f"Invalid URL: {url}", param="url", code="url_invalid")
    return url


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise invalid_request("Missing required param: enabled_events.", param="enabled_events")
    if "*" in events and len(events) > 1:
        raise invalid_request("'*' cannot be combined with other events.", param="enabled_events")
    return events


@router.post("/v1/webhook_endpoints", CREATE)
def create_webhook_endpoint(call: Call) -> StripeObject:
    p = call.params
    endpoint = call.state.webhooks.add_endpoint(
        _check_url(p["url"]),
        enabled_events=_check_events(p["enabled_events"]),
        description=p.get("description"),
        metadata=apply_metadata({}, p.get("metadata", {})),
        api_version=p.get("api_version"),
    )
    # Stripe shows the signing secret only in the response to create.
    return {**endpoint, "secret": endpoint["_secret"]}


@router.get("/v1/webhook_endpoints/{id}")
def retrieve_webhook_endpoint(call: Call) -> StripeObject:
    return call.require("webhook_endpoint", call.path["id"])


@router.post("/v1/webhook_endpoints/{id}", UPDATE)
def update_webhook_endpoint(call: Call) -> StripeObject:
    endpoint = call.require("webhook_endpoint", call.path["id"])
    p = call.params
    changes: dict[str, object] = {}
    if "url" in p:
        changes["url"] = _check_url(p["url"])
    if "enabled_events" in p:
        changes["enabled_events"] = _check_events(p["enabled_events"])
    if "description" in p:
        changes["description"] = p["description"]
    if "disabled" in p:
        changes["status"] = "disabled" if p["disabled"] else "enabled"
    if "metadata" in p:
        changes["metadata"] = apply_metadata(endpoint["metadata"], p["metadata"])
    call.state.update(endpoint, changes)
    return endpoint


@router.delete("/v1/webhook_endpoints/{id}")
def delete_webhook_endpoint(call: Call) -> StripeObject:
    endpoint = call.require("webhook_endpoint", call.path["id"])
    return call.state.mark_deleted(endpoint)


@router.get("/v1/webhook_endpoints", list=True)
def list_webhook_endpoints(call: Call) -> StripeObject:
    return call.list_response(call.state.all("webhook_endpoint", newest_first=True))
