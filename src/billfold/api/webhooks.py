"""Document 003's Stripe webhook route, `POST /api/stripe/webhook`, and the one function every
webhook route calls (`accept_stripe_webhook`).

It feeds the same inbox as `/api/v1/payments/webhook` (document 004): the signature is checked
on the raw body (400 and nothing stored when it is forged, stale or missing), the event is
stored once under its id with the job that applies it (one statement, no request transaction),
the answer is sent at once, and the due events are applied in a batch right after it (and
retried by the job runner if applying one fails). Point a Stripe webhook endpoint at either
path; both behave the same.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from pydantic import BaseModel

from billfold.api.deps import ContainerDep
from billfold.api.errors import ANY_ROUTE, error_responses
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.container import Container
from billfold.stripe.inbox import StoredEvent, apply_due, receive_webhook

router = APIRouter(tags=["Stripe webhooks (document 003)"])


async def accept_stripe_webhook(
    request: Request, container: Container, background: BackgroundTasks
) -> StoredEvent:
    """Verify and store a delivery (one statement: the route opens no transaction), and apply
    the due events after the answer, in a batch shared with the deliveries arriving meanwhile.
    Every Stripe webhook route calls this and only shapes the answer."""
    stored = await receive_webhook(
        container.db,
        container.settings,
        await request.body(),
        request.headers.get("stripe-signature"),
        clock=container.clock,
    )
    background.add_task(apply_due, container)
    return stored


class WebhookReceived(BaseModel):
    received: bool
    event_id: str
    type: str
    duplicate: bool


@router.post(
    "/api/stripe/webhook", response_model=WebhookReceived, responses=error_responses(*ANY_ROUTE)
)
@rate_limit(RateLimitClass.WEBHOOK)
async def stripe_webhook(
    request: Request, container: ContainerDep, background: BackgroundTasks
) -> WebhookReceived:
    """Receive a Stripe event: verified, stored once, applied after the response."""
    stored = await accept_stripe_webhook(request, container, background)
    return WebhookReceived(
        received=True, event_id=stored.id, type=stored.type, duplicate=not stored.inserted
    )
