"""The audit log's job: deferred entries (`record_event(deferred=True)`, a usage debit's)
chained into the log in batches, every 5 seconds, once per slot however many workers run."""

from __future__ import annotations

from billfold.audit.service import chain_deferred
from billfold.jobs import JobRegistry, JobRun

jobs = JobRegistry()

CHAIN_DEFERRED_JOB = "audit.chain_deferred"
BATCH = 1000


@jobs.every(CHAIN_DEFERRED_JOB, seconds=5)
async def chain_deferred_entries(run: JobRun) -> None:
    """Batches of up to BATCH deferred entries, each batch one transaction (one hold of the
    chain head's lock), until none is left."""
    while True:
        async with run.container.db.transaction() as session:
            chained = await chain_deferred(session, limit=BATCH)
        if chained < BATCH:
            return
