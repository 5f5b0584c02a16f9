"""The job runner: durable background work on SQLite and PostgreSQL.

- `enqueue(session, kind, payload, run_at=, key=)`: write a job in the caller's transaction
  (a transactional outbox: it runs after the commit, never after a rollback).
- `JobRegistry`: where a domain declares its kinds (`@jobs.kind("x.y")`) and recurring ones
  (`@jobs.every("x.sweep", seconds=3600)` or `cron="0 * * * *"`); the composition root combines
  the domains' registries.
- `JobRunner` (claim, run, back off, dead after `max_attempts`) and `Worker` (the loop
  `billfold worker` and the server's embedded worker run).
- `queue.retry`, `queue.stats`, `queue.list_jobs`: `billfold jobs retry|stats|list`.

It imports nothing above db/, config, clock, errors and observability (and the `Container`
type its handlers receive); domains import it.
"""

from billfold.jobs.models import Job, JobStatus
from billfold.jobs.queue import JobStats, enqueue, enqueue_many, list_jobs, retry, stats
from billfold.jobs.registry import JobBatch, JobFailure, JobKind, JobRegistry, JobRun
from billfold.jobs.runner import JobRunner, LeaseLost, RunReport, Worker

__all__ = [
    "Job",
    "JobBatch",
    "JobFailure",
    "JobKind",
    "JobRegistry",
    "JobRun",
    "JobRunner",
    "JobStats",
    "JobStatus",
    "LeaseLost",
    "RunReport",
    "Worker",
    "enqueue",
    "enqueue_many",
    "list_jobs",
    "retry",
    "stats",
]
