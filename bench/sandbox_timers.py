"""Stripe sandbox timer queue: scheduling, cancelling and firing timers, in process.

One test clock carries N pending timers (a renewal per subscription, spread over a month); half of
them are cancelled one by one (subscriptions canceled), then the clock is advanced past them
all so the other half fire in time order, each scheduling its next renewal a month later
(which must not fire in this advance). Another clock keeps N timers of its own that must not
fire either. Reports operations per second for each phase and checks the outcome.

    .venv/bin/python bench/sandbox_timers.py [--timers 10000]

To compare with another version of the sandbox, put its `src` first on the path:
`PYTHONPATH=/tmp/other/src .venv/bin/python bench/sandbox_timers.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where bench/http.py would hide the
# standard library's `http` package (imported by httpx, PyJWT, asyncpg...): it goes last.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))

import argparse
import time

from billfold_sandbox.state import SandboxState, Timer

T0 = 1_800_000_000
MONTH = 30 * 86400


def _rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<52} {count / seconds:>10.0f}/s  ({count} in {seconds:.3f} s)")


def _clock(state: SandboxState, clock_id: str) -> None:
    state.insert(
        {
            "id": clock_id,
            "object": "test_helpers.test_clock",
            "created": T0,
            "frozen_time": T0,
            "status": "ready",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timers", type=int, default=10_000)
    n = parser.parse_args().timers
    step = MONTH // (n + 2)  # every first renewal falls within the month

    state = SandboxState()
    fired: list[str] = []

    def renew(state: SandboxState, timer: Timer) -> None:
        fired.append(timer.object_id)
        state.schedule(timer.at + MONTH, "bench.renew", timer.object_id, clock_id=timer.clock_id)

    state.register_timer("bench.renew", renew)
    _clock(state, "clock_bench")
    _clock(state, "clock_other")
    for i in range(n):
        state.schedule(T0 + step * (i + 1), "bench.renew", f"sub_other{i}", clock_id="clock_other")

    started = time.perf_counter()
    for i in range(n):
        state.schedule(T0 + step * (i + 1), "bench.renew", f"sub_{i}", clock_id="clock_bench")
    _rate("timers scheduled", n, time.perf_counter() - started)

    cancelled = range(1, n, 2)
    started = time.perf_counter()
    for i in cancelled:
        assert state.cancel_timers(f"sub_{i}", "bench.renew") == 1
    _rate(
        f"timers cancelled one by one ({2 * n} pending)",
        len(cancelled),
        time.perf_counter() - started,
    )

    started = time.perf_counter()
    with state.lock:
        state.run_forward("clock_bench", T0 + step * (n + 1))
    elapsed = time.perf_counter() - started
    _rate("timers fired in one clock advance (each reschedules)", len(fired), elapsed)

    assert fired == [f"sub_{i}" for i in range(0, n, 2)], "timers fired out of order"
    pending = state.pending_timers()
    assert len(pending) == n + len(fired), len(pending)
    assert sum(t.clock_id == "clock_bench" for t in pending) == len(fired)
    print(f"end state: {len(fired)} fired in order, {len(pending)} pending")


if __name__ == "__main__":
    main()
