"""Webhook delivery: every event to every matching endpoint, signed like Stripe signs it.

Each endpoint has a worker thread with its own queue, so deliveries to one endpoint happen
in the order the events happened; a failed delivery (non-2xx or no answer) is retried with
exponential back-off before the next event is sent (up to `max_attempts`), and every attempt
is recorded. Switches (`duplicate`, `shuffle`, `paused`) make deliveries arrive twice and out
of order on purpose. `wait_idle()` returns once nothing is queued or in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from billfold_sandbox.state import SandboxState, StripeObject

# fn(url, body, headers, timeout) -> HTTP status code (raises on no answer).
Sender = Callable[[str, bytes, dict[str, str], float], int]
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value for `payload`: `t=<ts>,v1=<hmac-sha256>`."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def _http_sender() -> Sender:
    client = httpx.Client(trust_env=False)  # deliver directly, never through a proxy

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        return client.post(url, content=body, headers=headers, timeout=timeout).status_code

    return send


@dataclass
class _Delivery:
    event_id: str
    event_type: str
    payload: str


class _EndpointWorker(threading.Thread):
    def __init__(self, dispatcher: WebhookDispatcher, endpoint_id: str) -> None:
        super().__init__(name=f"sandbox-webhooks-{endpoint_id}", daemon=True)
        self.dispatcher = dispatcher
        self.endpoint_id = endpoint_id
        self.queue: deque[_Delivery] = deque()
        self.busy = False
        self.stopped = False
        self.sender = dispatcher.sender_factory()

    def run(self) -> None:
        d = self.dispatcher
        while True:
            with d.cond:
                while not self.stopped and (not self.queue or d.paused):
                    d.cond.wait()
                if self.stopped:
                    return
                batch = self._take_batch()
                self.busy = True
            try:
                for delivery in batch:
                    if self.stopped:
                        break
                    self._deliver(delivery)
            finally:
                with d.cond:
                    self.busy = False
                    d.cond.notify_all()

    def _take_batch(self) -> list[_Delivery]:
        d = self.dispatcher
        if d.shuffle:
            batch = list(self.queue)
            self.queue.clear()
            original = list(batch)
            d.random.shuffle(batch)
            if len(batch) > 1 and batch == original:
                batch.reverse()
        else:
            batch = [self.queue.popleft()]
        if d.duplicate:
            doubled = [*batch, *batch]
            if d.shuffle:
                d.random.shuffle(doubled)
            else:
                doubled = [x for item in batch for x in (item, item)]
            batch = doubled
        return batch

    def _deliver(self, delivery: _Delivery) -> None:
        d = self.dispatcher
        for attempt in range(1, d.max_attempts + 1):
            endpoint = d.state.get("webhook_endpoint", self.endpoint_id)
            if endpoint is None or endpoint.get("deleted") or endpoint.get("status") != "enabled":
                self._settle(delivery, succeeded=False)
                return
            url, secret = str(endpoint["url"]), str(endpoint["_secret"])
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                "Stripe-Signature": sign(delivery.payload, secret),
            }
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            try:
                status = self.sender(url, delivery.payload.encode(), headers, d.timeout)
            except Exception as exc:  # no answer: retried like a failure
                error = f"{type(exc).__name__}: {exc}"
            ok = status is not None and 200 <= status < 300
            last = ok or attempt == d.max_attempts
            delay = None if last else d.retry_delay(attempt)
            d.record(
                {
                    "endpoint": self.endpoint_id,
                    "event": delivery.event_id,
                    "type": delivery.event_type,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "succeeded": ok,
                    "at": time.time(),
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "retry_in": delay,  # seconds until the next attempt (None: no more)
                }
            )
            if ok:
                self._settle(delivery, succeeded=True)
                return
            if delay is None:
                self._settle(delivery, succeeded=False)  # given up on: not resumed on restart
            else:
                with d.cond:
                    d.cond.wait_for(lambda: self.stopped, timeout=delay)
                if self.stopped:
                    return

    def _settle(self, delivery: _Delivery, *, succeeded: bool) -> None:
        """This endpoint is done with the event: drop it from the event's undelivered list
        (kept in the state so a restart resumes what was still owed) and count a success."""
        state = self.dispatcher.state
        with state.lock:
            event = state.get("event", delivery.event_id)
            owed = event.get("_undelivered", []) if event is not None else []
            if event is None or self.endpoint_id not in owed:
                return  # a duplicate delivery, or already settled
            owed.remove(self.endpoint_id)
            if succeeded and event.get("pending_webhooks", 0) > 0:
                event["pending_webhooks"] -= 1
            state.touch()
        state.commit()


class WebhookDispatcher:
    """Queues and delivers events to the webhook endpoints stored in the state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.cond = threading.Condition()
        self.random = random.Random()
        self.duplicate = False
        self.shuffle = False
        self.paused = False
        self.max_attempts = 5
        self.retry_base = 0.5  # seconds before the 2nd attempt; doubles each time
        self.retry_cap = 30.0
        self.timeout = 10.0
        self.sender_factory: Callable[[], Sender] = _http_sender
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=10000)
        self._workers: dict[str, _EndpointWorker] = {}

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): exponential, capped."""
        return min(self.retry_cap, self.retry_base * 2.0 ** (attempt - 1))

    # --- endpoints ----------------------------------------------------------------------
    def add_endpoint(
        self,
        url: str,
        *,
        enabled_events: list[str] | None = None,
        secret: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        api_version: str | None = None,
        endpoint_id: str | None = None,
    ) -> StripeObject:
        """Register an endpoint (a fixed `secret` for ones the sandbox creates itself)."""
        state = self.state
        with state.lock:
            endpoint: StripeObject = {
                "id": endpoint_id or state.new_id("we"),
                "object": "webhook_endpoint",
                "api_version": api_version,
                "application": None,
                "created": state.now(),
                "description": description,
                "enabled_events": list(enabled_events or ["*"]),
                "livemode": False,
                "metadata": dict(metadata or {}),
                "status": "enabled",
                "url": url,
                "_secret": secret or "whsec_" + state.new_id("x", 32)[2:],
            }
            return state.insert(endpoint)

    def endpoints_for(self, event_type: str) -> list[str]:
        """Ids of enabled endpoints subscribed to `event_type`."""
        matching = []
        for endpoint in self.state.all("webhook_endpoint"):
            if endpoint.get("status") != "enabled":
                continue
            enabled = endpoint.get("enabled_events") or []
            if "*" in enabled or event_type in enabled:
                matching.append(str(endpoint["id"]))
        return matching

    # --- queueing -----------------------------------------------------------------------
    def enqueue(self, event: StripeObject, endpoint_ids: list[str]) -> None:
        if not endpoint_ids:
            return
        payload = json.dumps(self.state.render(event), indent=2)
        delivery = _Delivery(str(event["id"]), str(event["type"]), payload)
        with self.cond:
            for endpoint_id in endpoint_ids:
                worker = self._workers.get(endpoint_id)
                if worker is None or not worker.is_alive():
                    worker = _EndpointWorker(self, endpoint_id)
                    self._workers[endpoint_id] = worker
                    worker.start()
                worker.queue.append(delivery)
            self.cond.notify_all()

    def resume(self) -> None:
        """Queue again, in the order they happened, the deliveries a stopped sandbox still owed
        (called after loading a saved state)."""
        for event in self.state.objects.get("event", {}).values():
            owed = [e for e in event.get("_undelivered", []) if isinstance(e, str)]
            if owed:
                self.enqueue(event, owed)

    def record(self, attempt: dict[str, Any]) -> None:
        with self.cond:
            self.deliveries.append(attempt)

    def pending(self) -> int:
        """Deliveries queued or in flight."""
        with self.cond:
            return sum(len(w.queue) + (1 if w.busy else 0) for w in self._workers.values())

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is queued or in flight; False if `timeout` passed first."""
        with self.cond:
            return self.cond.wait_for(
                lambda: all(not w.queue and not w.busy for w in self._workers.values()),
                timeout=timeout,
            )

    def configure(
        self,
        *,
        duplicate: bool | None = None,
        shuffle: bool | None = None,
        paused: bool | None = None,
        max_attempts: int | None = None,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        timeout: float | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Change the delivery switches; returns the switches now in force."""
        with self.cond:
            if duplicate is not None:
                self.duplicate = duplicate
            if shuffle is not None:
                self.shuffle = shuffle
            if paused is not None:
                self.paused = paused
            if max_attempts is not None:
                self.max_attempts = max(1, max_attempts)
            if retry_base is not None:
                self.retry_base = max(0.0, retry_base)
            if retry_cap is not None:
                self.retry_cap = max(0.0, retry_cap)
            if timeout is not None:
                self.timeout = max(0.1, timeout)
            if seed is not None:
                self.random.seed(seed)
            self.cond.notify_all()
            return self.switches()

    def switches(self) -> dict[str, Any]:
        return {
            "duplicate": self.duplicate,
            "shuffle": self.shuffle,
            "paused": self.paused,
            "max_attempts": self.max_attempts,
            "retry_base": self.retry_base,
            "retry_cap": self.retry_cap,
            "timeout": self.timeout,
        }

    def stop(self) -> None:
        """Stop every worker (queued deliveries are dropped)."""
        with self.cond:
            workers = list(self._workers.values())
            for worker in workers:
                worker.stopped = True
                worker.queue.clear()
            self._workers.clear()
            self.cond.notify_all()
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout=5)

    def reset(self) -> None:
        """Stop workers, forget attempts and restore the default switches."""
        self.stop()
        with self.cond:
            self.deliveries.clear()
            self.duplicate = self.shuffle = self.paused = False
            self.max_attempts, self.retry_base, self.retry_cap, self.timeout = 5, 0.5, 30.0, 10.0
