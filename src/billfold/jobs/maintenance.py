"""The runner's own recurring job: forget done jobs after BILLFOLD_JOBS_KEEP_DAYS (dead ones
stay until retried or looked at; a job's key stops deduplicating once it is forgotten)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from billfold.jobs.models import Job, JobStatus
from billfold.jobs.registry import JobRegistry, JobRun

jobs = JobRegistry()


@jobs.every("jobs.prune", seconds=3600)
async def prune_done_jobs(run: JobRun) -> None:
    """Delete the done jobs that finished more than `jobs_keep_days` ago."""
    keep = timedelta(days=run.container.settings.jobs_keep_days)
    async with run.transaction() as session:
        await session.execute(
            delete(Job)
            .where(
                Job.status == JobStatus.DONE.value,
                Job.finished_at < run.container.clock.now() - keep,
            )
            .execution_options(synchronize_session=False)
        )
