"""Who is looking at a page: the panel session behind the request (cookie or `X-SESSION-ID`),
its account, and the CSRF check of every form; `PanelRoute` renders billfold's errors as pages.

A customer's session is pinned to one billing account when it opens (the sign-in link named
it, under the API's tenancy rules), and every customer page acts on that account and no other:
no page takes an account from its URL, a header or a form. Only an operator's session may name
accounts (the console's URLs).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from billfold.api.audit_deps import audit_context
from billfold.api.deps import ReadSessionDep, SessionDep, get_container
from billfold.api.errors import status_for
from billfold.api.ratelimit import charge_subject
from billfold.api.session_deps import SESSION_HEADER
from billfold.audit.context import AuditContext
from billfold.auth.sessions import (
    PanelSession,
    account_of_session,
    csrf_matches,
    find_session,
)
from billfold.customers.models import BillingAccount
from billfold.errors import BillfoldError, Forbidden, ValidationFailed
from billfold.web.rendering import render, secure_headers

SESSION_COOKIE = "billfold_session"
# Forms shown before a session exists (the development and the operator's sign-in) carry a
# double-submit token: this cookie's value, repeated in the form.
PRE_SESSION_CSRF_COOKIE = "billfold_csrf"
CSRF_FIELD = "csrf_token"


def session_token(request: Request) -> str | None:
    """The session token the browser sent: the cookie, or document 003's `X-SESSION-ID`."""
    return request.cookies.get(SESSION_COOKIE) or request.headers.get(SESSION_HEADER) or None


def cookie_is_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """HttpOnly, Secure over HTTPS, SameSite=Lax; SameSite=None (so the host app's page may
    frame the panel) only over HTTPS with framing origins listed."""
    container = get_container(request)
    secure = cookie_is_secure(request)
    same_site: Literal["lax", "none"] = (
        "none" if secure and container.settings.panel_frame_ancestors else "lax"
    )
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        secure=secure,
        samesite=same_site,
        path="/",
    )


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in browser: its session and, for a customer, the account it acts on."""

    session: PanelSession
    account: BillingAccount | None

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    @property
    def is_operator(self) -> bool:
        return self.session.operator


@dataclass(frozen=True, slots=True)
class Customer:
    session: PanelSession
    account: BillingAccount
    is_operator = False

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


async def _visitor(request: Request, session: AsyncSession) -> Visitor:
    container = get_container(request)
    row = await find_session(session, session_token(request), now=container.clock.now())
    # A signed-in browser has the budget of the one who signed in (as the API's callers do).
    await charge_subject(request, "panel", row.actor)
    account = None if row.operator else await account_of_session(session, row)
    return Visitor(row, account)


def _check_csrf(visitor: Visitor, sent: str | None) -> None:
    if not csrf_matches(visitor.session, sent):
        raise Forbidden("this form's security token is missing or out of date; reload the page")


async def reading_visitor(request: Request, session: ReadSessionDep) -> Visitor:
    return await _visitor(request, session)


async def posting_visitor(
    request: Request,
    session: SessionDep,
    csrf_token: Annotated[str | None, Form(max_length=128)] = None,
) -> Visitor:
    """The visitor of a form's POST: its CSRF token must be the session's (else 403)."""
    visitor = await _visitor(request, session)
    _check_csrf(visitor, csrf_token)
    return visitor


def _customer(visitor: Visitor) -> Customer:
    if visitor.account is None:
        raise Forbidden("an operator's session has no customer pages; open the console")
    return Customer(visitor.session, visitor.account)


def _operator(visitor: Visitor) -> Visitor:
    if not visitor.is_operator:
        raise Forbidden("the console is for operators")
    return visitor


async def reading_customer(visitor: Annotated[Visitor, Depends(reading_visitor)]) -> Customer:
    return _customer(visitor)


async def posting_customer(visitor: Annotated[Visitor, Depends(posting_visitor)]) -> Customer:
    return _customer(visitor)


async def reading_operator(visitor: Annotated[Visitor, Depends(reading_visitor)]) -> Visitor:
    return _operator(visitor)


async def posting_operator(visitor: Annotated[Visitor, Depends(posting_visitor)]) -> Visitor:
    return _operator(visitor)


VisitorDep = Annotated[Visitor, Depends(reading_visitor)]
ReadingCustomerDep = Annotated[Customer, Depends(reading_customer)]
PostingCustomerDep = Annotated[Customer, Depends(posting_customer)]
ReadingOperatorDep = Annotated[Visitor, Depends(reading_operator)]
PostingOperatorDep = Annotated[Visitor, Depends(posting_operator)]
PostingVisitorDep = Annotated[Visitor, Depends(posting_visitor)]


def panel_audit(request: Request, session: PanelSession) -> AuditContext:
    """The audit context of a panel action: the session's signed-in actor (`panel:...`)."""
    context = audit_context(request)
    context.fixed_actor = session.actor
    return context


def pre_session_csrf(request: Request) -> str:
    """The double-submit token of a form shown before sign-in (reused while its cookie lives)."""
    return request.cookies.get(PRE_SESSION_CSRF_COOKIE) or secrets.token_urlsafe(24)


def check_pre_session_csrf(request: Request, sent: str | None) -> None:
    cookie = request.cookies.get(PRE_SESSION_CSRF_COOKIE)
    if not cookie or not sent or not secrets.compare_digest(cookie, sent):
        raise Forbidden("this form's security token is missing or out of date; reload the page")


def error_page(request: Request, exc: BillfoldError) -> Response:
    """A billfold error as a page of the panel (a signed-out visitor is asked to sign in)."""
    status = status_for(exc)
    container = get_container(request)
    template = "signed_out.html" if status == 401 else "error.html"
    return render(
        request,
        template,
        {
            "title": "Sign in" if status == 401 else "Something went wrong",
            "status": status,
            "message": exc.message,
            "dev_sign_in": container.settings.sandbox_mode,
            "visitor": None,
        },
        status_code=status,
    )


class PanelRoute(APIRoute):
    """A route of the panel: billfold's errors (and a form's invalid fields) become pages, and
    every response carries the panel's security headers (CSP with frame-ancestors, ...)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except BillfoldError as exc:
                response = error_page(request, exc)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "form"
                response = error_page(
                    request,
                    ValidationFailed(f"{field}: {first.get('msg', 'invalid value')}", field=field),
                )
            return secure_headers(response, get_container(request).settings)

        return handler
