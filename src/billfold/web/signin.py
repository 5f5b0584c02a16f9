"""Signing in and out of the panel: a sign-in link, the operator's API key, and (sandbox mode
only, never in production) a development sign-in for trying the panel locally."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from billfold.api.deps import SessionDep, client_address, get_container, request_id
from billfold.audit.service import record_event
from billfold.auth.apikeys import authenticate_api_key
from billfold.auth.principal import AccountRef
from billfold.auth.sessions import (
    MAX_LINK_LENGTH,
    OpenedSession,
    open_session,
    redeem_sign_in_link,
    sign_out,
)
from billfold.customers.service import get_or_create_account
from billfold.errors import NotFound, Unauthenticated
from billfold.web.rendering import render
from billfold.web.visitors import (
    PRE_SESSION_CSRF_COOKIE,
    SESSION_COOKIE,
    PanelRoute,
    PostingVisitorDep,
    check_pre_session_csrf,
    pre_session_csrf,
    session_token,
    set_cookie,
)

router = APIRouter(route_class=PanelRoute, include_in_schema=False)


def _signed_in(request: Request, opened: OpenedSession) -> Response:
    """Set the session cookie and go to the first page (the console for an operator)."""
    target = "/operator" if opened.session.operator else "/"
    response = RedirectResponse(target, status_code=303)
    settings = get_container(request).settings
    set_cookie(request, response, SESSION_COOKIE, opened.token, settings.panel_session_minutes * 60)
    response.delete_cookie(PRE_SESSION_CSRF_COOKIE, path="/")
    return response


async def _audit_sign_in(request: Request, session: SessionDep, opened: OpenedSession) -> None:
    container = get_container(request)
    await record_event(
        session,
        action="panel.signed_in",
        actor=opened.session.actor,
        account_id=opened.session.account_id,
        details={"operator": opened.session.operator},
        ip=client_address(request),
        request_id=request_id(request) or None,
        at=container.clock.now(),
    )


@router.get("/sign-in")
async def sign_in_with_link(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Query(max_length=MAX_LINK_LENGTH)] = "",
) -> Response:
    """Redeem a sign-in link (once) and open a session."""
    container = get_container(request)
    if not token:
        raise Unauthenticated("open the billing panel from your account's page to sign in")
    opened = await redeem_sign_in_link(session, container.settings, token, clock=container.clock)
    await _audit_sign_in(request, session, opened)
    return _signed_in(request, opened)


@router.post("/sign-out")
async def sign_out_page(
    request: Request, session: SessionDep, visitor: PostingVisitorDep
) -> Response:
    """End the session (the form's CSRF token is checked first)."""
    container = get_container(request)
    token = session_token(request) or ""
    await sign_out(session, token, now=container.clock.now())
    await record_event(
        session,
        action="panel.signed_out",
        actor=visitor.session.actor,
        account_id=visitor.session.account_id,
        ip=client_address(request),
        request_id=request_id(request) or None,
        at=container.clock.now(),
    )
    response = render(
        request,
        "signed_out.html",
        {
            "title": "Signed out",
            "status": 200,
            "message": "You are signed out.",
            "dev_sign_in": container.settings.sandbox_mode,
            "visitor": None,
        },
    )
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _form_page(request: Request, template: str, context: dict[str, object]) -> Response:
    token = pre_session_csrf(request)
    response = render(request, template, {**context, "csrf_token": token, "visitor": None})
    set_cookie(request, response, PRE_SESSION_CSRF_COOKIE, token, 3600)
    return response


@router.get("/operator/sign-in")
async def operator_sign_in_form(request: Request) -> Response:
    """The operator's sign-in with an API key."""
    return _form_page(request, "operator_sign_in.html", {"title": "Operator sign-in"})


@router.post("/operator/sign-in")
async def operator_sign_in(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    """An API key opens an operator's session (the key itself is never stored in it)."""
    check_pre_session_csrf(request, csrf_token)
    container = get_container(request)
    principal = await authenticate_api_key(session, api_key.strip(), now=container.clock.now())
    opened = await open_session(
        session,
        container.settings,
        account=None,
        actor=f"panel:{principal.actor}",
        operator=True,
        clock=container.clock,
    )
    await _audit_sign_in(request, session, opened)
    return _signed_in(request, opened)


def _require_dev_sign_in(request: Request) -> None:
    if not get_container(request).settings.sandbox_mode:
        raise NotFound("the development sign-in exists only in sandbox mode")


@router.get("/dev/sign-in")
async def dev_sign_in_form(request: Request) -> Response:
    """Sign in as anyone, in sandbox mode only (no Stripe key, never in production)."""
    _require_dev_sign_in(request)
    return _form_page(request, "dev_sign_in.html", {"title": "Development sign-in"})


@router.post("/dev/sign-in")
async def dev_sign_in(
    request: Request,
    session: SessionDep,
    account: Annotated[str, Form(max_length=300)] = "",
    operator: Annotated[bool, Form()] = False,
    csrf_token: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    _require_dev_sign_in(request)
    check_pre_session_csrf(request, csrf_token)
    container = get_container(request)
    billing_account = None
    if not operator:
        ref = AccountRef.parse(account or "", field="account")
        billing_account = await get_or_create_account(
            session,
            ref.kind,
            ref.external_id,
            currency=container.settings.stripe_default_currency,
            clock=container.clock,
        )
    opened = await open_session(
        session,
        container.settings,
        account=billing_account,
        actor="panel:dev:" + (str(account) if not operator else "operator"),
        operator=operator,
        clock=container.clock,
    )
    await _audit_sign_in(request, session, opened)
    return _signed_in(request, opened)
