"""Injected faults: make the next N calls (or a share of calls) to an endpoint fail.

Set through `POST /v1/test_helpers/sandbox/faults` (see README) or `state.faults.add(...)`.
A fault answers 500 (`api_error`), 429 (`rate_limit`) or holds the request for `timeout`
seconds and then answers 500, so a client with a shorter timeout sees a timeout. With
`after=true` the call is carried out first and only its response is lost, which is what an
idempotent retry has to survive.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import asdict, dataclass


@dataclass
class Fault:
    id: str
    path: str  # "/v1/customers", or a glob such as "/v1/customers/*"
    method: str | None  # None = any method
    status: int  # 500 or 429 (or any 4xx/5xx); ignored while holding for `timeout`
    timeout: float | None  # seconds to hold the request before answering
    remaining: int | None  # None = no count limit (use `rate`)
    rate: float | None  # share of matching calls that fail (0..1), None = all
    after: bool  # carry the call out, then fail the response
    hits: int = 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class FaultTable:
    """The active faults; thread-safe."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._random = random.Random()

    def add(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int = 500,
        timeout: float | None = None,
        count: int | None = 1,
        rate: float | None = None,
        after: bool = False,
    ) -> Fault:
        """Fail the next `count` calls (or a `rate` share of calls) to `path`."""
        with self._lock:
            self._seq += 1
            fault = Fault(
                id=f"fault_{self._seq}",
                path=path,
                method=method.upper() if method else None,
                status=status,
                timeout=timeout,
                remaining=None if rate is not None and count is None else count,
                rate=rate,
                after=after,
            )
            self._faults.append(fault)
            return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The fault that applies to this call, if any (consuming one of its `count`)."""
        with self._lock:
            for fault in self._faults:
                if fault.method and fault.method != method.upper():
                    continue
                if not (fault.path == path or fnmatch.fnmatchcase(path, fault.path)):
                    continue
                if fault.rate is not None and self._random.random() >= fault.rate:
                    continue
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
            return None

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
