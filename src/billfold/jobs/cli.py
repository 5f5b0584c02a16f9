"""`billfold jobs list|retry|stats`: look after the job runner's queue. (`billfold worker`, which
needs every domain's job kinds, is defined by the composition root, billfold.cli.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import SystemClock
from billfold.config import get_settings
from billfold.db.engine import Database
from billfold.jobs.metrics import publish
from billfold.jobs.models import Job, JobStatus
from billfold.jobs.queue import JobStats, list_jobs, retry, stats

jobs_app = typer.Typer(help="The job runner's queue: list, retry, stats.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def main() -> T:
        settings = get_settings()
        settings.check()
        database = Database(settings.effective_database_url)
        try:
            async with database.transaction() as session:
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(main())


@jobs_app.command("list")
def list_command(
    status: JobStatus | None = typer.Option(None, "--status", help="Only jobs in this status."),
    kind: str | None = typer.Option(None, "--kind", help="Only jobs of this kind."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
) -> None:
    """The newest jobs, with the last error of those that failed."""
    found: list[Job] = _in_transaction(
        lambda s: list_jobs(s, status=status.value if status else None, kind=kind, limit=limit)
    )
    table = Table("id", "kind", "status", "attempts", "run at", "key", "last error")
    for job in found:
        table.add_row(
            str(job.id),
            job.kind,
            job.status,
            f"{job.attempts}/{job.max_attempts}",
            job.run_at.strftime("%Y-%m-%d %H:%M:%S"),
            job.key or "",
            (job.last_error or "")[:120],
        )
    console.print(table)


@jobs_app.command("retry")
def retry_command(
    job_id: int | None = typer.Argument(None, help="The job to run again."),
    all_dead: bool = typer.Option(False, "--all-dead", help="Every dead job."),
) -> None:
    """Make a failed or dead job (or every dead one) due now, with its attempts reset."""
    if (job_id is None) == (not all_dead):
        err_console.print("[red]error:[/red] give a job id or --all-dead")
        raise typer.Exit(code=2)
    count = _in_transaction(
        lambda s: retry(s, job_id=job_id, all_dead=all_dead, clock=SystemClock())
    )
    console.print(f"{count} jobs queued again")
    if job_id is not None and count == 0:
        raise typer.Exit(code=1)


@jobs_app.command("stats")
def stats_command() -> None:
    """Jobs by status and how long the oldest due one has waited."""
    found: JobStats = _in_transaction(lambda s: stats(s, clock=SystemClock()))
    publish(found)
    for status_name, count in found.counts.items():
        console.print(f"{status_name}: {count}")
    console.print(f"oldest due job waiting: {found.oldest_queued_age:.1f}s")
