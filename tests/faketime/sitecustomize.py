"""Loaded (via PYTHONPATH) by every Python process of a run under libfaketime (scripts/test-dates).

libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC=1 turns the absolute
CLOCK_MONOTONIC deadline of Python's time.sleep() (clock_nanosleep, TIMER_ABSTIME) into an
invalid one: every sleep raises OSError(EINVAL). Without that setting, waits with a timeout on
locks and conditions never return. So monotonic time stays real and time.sleep waits in
select(), which takes a relative timeout. Nothing else changes: the faked date is libfaketime's.
"""

from __future__ import annotations

import select
import time

_monotonic = time.monotonic


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = _monotonic() + seconds
    while (left := deadline - _monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
