"""The credits domain's job kinds: the sweep that writes off expired lots and releases
expired holds (every 30 s, once per slot however many workers run)."""

from __future__ import annotations

from billfold.audit.context import system_audit_context
from billfold.credits import service
from billfold.jobs import JobRegistry, JobRun

jobs = JobRegistry()

EXPIRY_JOB = "credits.expire"


@jobs.every(EXPIRY_JOB, seconds=30)
async def expire_credits(run: JobRun) -> None:
    """Expired lots written off by a ledger posting; expired holds released to their lots."""
    clock = run.container.clock
    async with run.transaction() as session:
        await service.expire_due(session, clock, system_audit_context("jobs", clock))
