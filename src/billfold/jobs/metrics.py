"""The runner's Prometheus metrics, in billfold's one registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from billfold.jobs.queue import JobStats
from billfold.observability import REGISTRY

JOBS = Gauge(
    "billfold_jobs",
    "Jobs by status (queued, running, done, failed, dead), as a worker last counted them.",
    ["status"],
    registry=REGISTRY,
)
OLDEST_DUE_AGE = Gauge(
    "billfold_jobs_oldest_due_age_seconds",
    "How long the oldest due job (queued or failed, run_at passed) has been waiting.",
    registry=REGISTRY,
)
RUNS = Counter(
    "billfold_job_runs_total",
    "Job attempts run by this process, by kind and outcome (done, failed, dead, lost).",
    ["kind", "outcome"],
    registry=REGISTRY,
)


def publish(stats: JobStats) -> None:
    for status, count in stats.counts.items():
        JOBS.labels(status).set(count)
    OLDEST_DUE_AGE.set(stats.oldest_queued_age)
