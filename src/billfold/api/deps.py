"""FastAPI dependencies shared by every dialect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.container import Container


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


# Dependencies are `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
# thread hop per request for a dictionary lookup.
async def _container(request: Request) -> Container:
    return get_container(request)


async def _unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed after the handler returns, before the response
    is sent (so a failed commit is an error response, never a success that did not happen)."""
    container = get_container(request)
    async with container.db.transaction() as session:
        request.state.db_session = session
        yield session


async def _read_unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction when its route only reads: it never takes a write lock
    (on SQLite it reads a snapshot while a writer works) and a statement that writes fails.
    What tenancy creates on first use it creates in a short writer of its own."""
    async with get_container(request).db.read() as session:
        yield session


async def end_transaction(session: AsyncSession) -> None:
    """Commit the request's transaction now, for a route whose service calls Stripe and opens
    its own short units of work (`subscriptions.start_checkout`): no database lock may be held
    while Stripe answers, and on SQLite any open transaction holds the write lock. The session
    is not used again in the request."""
    await session.commit()


# scope="function": the commit runs when the path operation ends, before the response goes out.
SessionDep = Annotated[AsyncSession, Depends(_unit_of_work, scope="function")]
# For GET routes that only read.
ReadSessionDep = Annotated[AsyncSession, Depends(_read_unit_of_work, scope="function")]
ContainerDep = Annotated[Container, Depends(_container)]


def request_id(request: Request) -> str:
    rid: str = getattr(request.state, "request_id", "")
    return rid


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None
