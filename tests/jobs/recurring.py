"""A recurring job kind for the runner's tests (`BILLFOLD_JOB_MODULES=tests.jobs.recurring`)."""

from __future__ import annotations

from billfold.jobs import JobRegistry, JobRun
from tests.jobs.kinds import record

jobs = JobRegistry()


@jobs.every("test.tick", seconds=1)
async def tick(run: JobRun) -> None:
    await record(run)
