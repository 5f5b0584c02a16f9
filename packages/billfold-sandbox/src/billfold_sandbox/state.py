"""The sandbox's world: every Stripe object, the clocks, timers, events and idempotency records.

One `SandboxState` per sandbox. All reads and writes of objects happen under `state.lock` (a
re-entrant thread lock: request handlers, webhook workers and test code in other threads share
it). Objects are plain JSON dicts in Stripe's shape; keys starting with `_` are private to the
sandbox (never rendered, but persisted), e.g. a webhook endpoint's `_secret`.
"""

from __future__ import annotations

import contextvars
import copy
import heapq
import logging
import os
import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billfold_sandbox.errors import invalid_request, resource_missing
from billfold_sandbox.persistence import Journal, dumps
from billfold_sandbox.version import API_VERSION

StripeObject = dict[str, Any]
# fn(state, clock_id | None, from_ts, to_ts): run the world forward over (from_ts, to_ts].
TimeHook = Callable[["SandboxState", "str | None", int, int], None]
# fn(state, timer): a scheduled timer came due; the clock reads `timer.at` while it runs.
TimerHandler = Callable[["SandboxState", "Timer"], None]
# fn(state, object) -> value for `expand[]=field` where the field is not a plain id.
Expander = Callable[["SandboxState", StripeObject], Any]
# fn(state, id) -> object or None: makes well-known ids (pm_card_visa) exist on first use.
Loader = Callable[["SandboxState", str], "StripeObject | None"]

log = logging.getLogger("billfold_sandbox")
_ALPHABET = string.ascii_letters + string.digits
SANDBOX_CLOCK = "__sandbox__"  # the key of the sandbox-wide clock in pinned times
IDEMPOTENCY_KEEP = 5000


@dataclass
class RequestInfo:
    """The API request being served (recorded in events' `request`)."""

    id: str
    idempotency_key: str | None


current_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "sandbox_request", default=None
)


@dataclass(order=True)
class Timer:
    """Something due at `at` on a clock (`clock_id` None = the sandbox-wide clock)."""

    at: int
    seq: int
    kind: str
    object_id: str
    clock_id: str | None = None
    data: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "seq": self.seq,
            "kind": self.kind,
            "object_id": self.object_id,
            "clock_id": self.clock_id,
            "data": self.data,
        }


class TimerQueue:
    """The pending timers: one heap per clock, an index by object, lazy deletion.

    Scheduling a timer, cancelling one and taking the next due one cost O(log n). A cancelled
    timer stays in its clock's heap as a tombstone (its `seq` in `_dead`) until it reaches the
    top, or until tombstones outnumber live timers and the heaps are compacted (amortised O(1)
    per cancellation). Iterating gives the live timers, unordered.
    """

    def __init__(self, timers: list[Timer] | None = None, *, compact_at_least: int = 64) -> None:
        self.compact_at_least = compact_at_least
        self._heaps: dict[str | None, list[Timer]] = {}
        self._by_object: dict[str, dict[int, Timer]] = {}
        self._dead: set[int] = set()
        self._live = 0
        for timer in timers or []:
            self._heaps.setdefault(timer.clock_id, []).append(timer)
            self._index(timer)
        for heap in self._heaps.values():
            heapq.heapify(heap)

    def __len__(self) -> int:
        return self._live

    def __iter__(self) -> Iterator[Timer]:
        for timers in list(self._by_object.values()):
            yield from list(timers.values())

    def push(self, timer: Timer) -> None:
        heapq.heappush(self._heaps.setdefault(timer.clock_id, []), timer)
        self._index(timer)

    def cancel(self, object_id: str, kind: str | None = None) -> int:
        """Drop an object's pending timers (of one kind, or all); how many were dropped."""
        mine = self._by_object.get(object_id)
        if not mine:
            return 0
        dropped = [seq for seq, t in mine.items() if kind is None or t.kind == kind]
        for seq in dropped:
            del mine[seq]
            self._dead.add(seq)
        if not mine:
            del self._by_object[object_id]
        self._live -= len(dropped)
        if len(self._dead) > max(self.compact_at_least, self._live):
            self._compact()
        return len(dropped)

    def drop(self, object_id: str, seq: int) -> None:
        """Forget one timer (replaying a journal: the timer that came due)."""
        mine = self._by_object.get(object_id)
        if mine is None or mine.pop(seq, None) is None:
            return
        if not mine:
            del self._by_object[object_id]
        self._dead.add(seq)
        self._live -= 1

    def cancel_clock(self, clock_id: str | None) -> int:
        """Drop every pending timer of a clock; how many were dropped."""
        dropped = 0
        for timer in self._heaps.pop(clock_id, []):
            if timer.seq in self._dead:
                self._dead.discard(timer.seq)
            else:
                self._forget(timer)
                dropped += 1
        return dropped

    def of(self, object_id: str) -> list[Timer]:
        """An object's pending timers, in time order."""
        return sorted(self._by_object.get(object_id, {}).values())

    def next_at(self, clock_id: str | None) -> int | None:
        """When the next pending timer of a clock is due (None: it has none)."""
        heap = self._pruned(clock_id)
        return heap[0].at if heap else None

    def pop_due(self, clock_id: str | None, until: int) -> Timer | None:
        """Take the first timer of a clock due by `until` (time order, then scheduling order)."""
        heap = self._pruned(clock_id)
        if not heap or heap[0].at > until:
            return None
        timer = heapq.heappop(heap)
        self._forget(timer)
        return timer

    def clear(self) -> None:
        self._heaps.clear()
        self._by_object.clear()
        self._dead.clear()
        self._live = 0

    def _index(self, timer: Timer) -> None:
        self._by_object.setdefault(timer.object_id, {})[timer.seq] = timer
        self._live += 1

    def _forget(self, timer: Timer) -> None:
        mine = self._by_object[timer.object_id]
        del mine[timer.seq]
        if not mine:
            del self._by_object[timer.object_id]
        self._live -= 1

    def _pruned(self, clock_id: str | None) -> list[Timer] | None:
        heap = self._heaps.get(clock_id)
        while heap and heap[0].seq in self._dead:
            self._dead.discard(heapq.heappop(heap).seq)
        if not heap:
            self._heaps.pop(clock_id, None)
            return None
        return heap

    def _compact(self) -> None:
        for clock_id, heap in list(self._heaps.items()):
            keep = [t for t in heap if t.seq not in self._dead]
            if keep:
                heapq.heapify(keep)
                self._heaps[clock_id] = keep
            else:
                del self._heaps[clock_id]
        self._dead.clear()


def random_id(prefix: str, length: int = 24) -> str:
    """`cus_` + 24 random letters and digits, like Stripe's ids."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


class SandboxState:
    """The in-memory Stripe world, optionally persisted (a snapshot and a journal, see
    `billfold_sandbox.persistence`): every commit, made before a response is sent, appends what
    changed, so a change the sandbox has acknowledged survives a kill -9."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        api_keys: set[str] | None = None,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path) if path else None
        # None: any sk_test_/rk_test_ key is accepted; otherwise only these keys.
        self.api_keys = api_keys
        self.api_version = API_VERSION
        self.lock = threading.RLock()
        self.objects: dict[str, OrderedDict[str, StripeObject]] = {}
        self._type_by_id: dict[str, str] = {}
        self.clock_offset = 0
        self.timers = TimerQueue()
        self._timer_seq = 0
        self.idempotency: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.time_hooks: list[TimeHook] = []
        self.timer_handlers: dict[str, TimerHandler] = {}
        self.expanders: dict[tuple[str, str], Expander] = {}
        self.loaders: dict[str, Loader] = {}
        self._pinned: dict[str, int] = {}
        self._dirty = False
        # Persistence: what changed since the last commit, and what the files hold.
        self.journal = Journal(self.path, fsync=fsync) if self.path else None
        # ids read or written through the accessors (a dict: in the order first seen)
        self._touched: dict[str, None] = {}
        self._listed: dict[str, None] = {}  # ids handed out by `all()`: checked after touch()
        self._blind = False  # touch(): something was edited in place, unnamed
        self._gone: set[str] = set()  # ids removed
        self._timer_ops: list[list[Any]] = []
        self._idem_ops: list[list[Any]] = []
        self._reset_op = False
        self._saved: dict[str, tuple[str, str]] = {}  # id -> (type, JSON) as the files have it
        self._saved_meta: tuple[int, int] = (0, 0)
        # A journal longer than this (and than the snapshot) is compacted into a new snapshot.
        self.compact_min_bytes = int(os.environ.get("SANDBOX_COMPACT_BYTES", 16 * 1024 * 1024))
        self._snapshot_size = 0
        self._compacting = False
        self._compaction_lock = threading.Lock()  # one snapshot written at a time
        # Created lazily to avoid import cycles.
        from billfold_sandbox.faults import FaultTable
        from billfold_sandbox.webhooks import WebhookDispatcher

        self.faults = FaultTable()
        self.webhooks = WebhookDispatcher(self)
        if self.journal is not None:
            self._load()

    # --- registration (resource modules, via their router) -------------------------------
    def register_time_hook(self, fn: TimeHook) -> None:
        """Call `fn(state, clock_id, from_ts, to_ts)` whenever a clock moves forward."""
        self.time_hooks.append(fn)

    def register_timer(self, kind: str, fn: TimerHandler) -> None:
        """Call `fn(state, timer)` when a timer of `kind` (see `schedule`) comes due."""
        self.timer_handlers[kind] = fn

    def register_expander(self, object_type: str, field: str, fn: Expander) -> None:
        self.expanders[(object_type, field)] = fn

    def register_loader(self, object_type: str, fn: Loader) -> None:
        self.loaders[object_type] = fn

    # --- ids and the store ------------------------------------------------------------
    def new_id(self, prefix: str, length: int = 24) -> str:
        """A fresh id with Stripe's prefix (`cus`, `pi`, `evt`, ...)."""
        while True:
            candidate = random_id(prefix, length)
            if candidate not in self._type_by_id:
                return candidate

    def _bucket(self, object_type: str) -> OrderedDict[str, StripeObject]:
        return self.objects.get(object_type) or OrderedDict()

    def insert(self, obj: StripeObject) -> StripeObject:
        """Store a new object (it must carry `id` and `object`)."""
        with self.lock:
            kind = obj["object"]
            if obj["id"] in self._type_by_id:
                raise invalid_request(
                    f"An object with id {obj['id']} already exists.", code="resource_already_exists"
                )
            self.objects.setdefault(kind, OrderedDict())[obj["id"]] = obj
            self._type_by_id[obj["id"]] = kind
            self._touched[obj["id"]] = None
            self._dirty = True
            return obj

    def get(self, object_type: str, object_id: str) -> StripeObject | None:
        """The stored object (deleted ones included: check `obj.get("deleted")`)."""
        with self.lock:
            found = self._bucket(object_type).get(object_id)
            if found is None and object_type in self.loaders:
                found = self.loaders[object_type](self, object_id)
            if found is not None:
                self._touched[object_id] = None
            return found

    def require(
        self, object_type: str, object_id: str, *, param: str = "id", deleted_ok: bool = False
    ) -> StripeObject:
        """The object, or Stripe's 404 `resource_missing` naming `param`."""
        found = self.get(object_type, object_id) if isinstance(object_id, str) else None
        if found is None or (found.get("deleted") and not deleted_ok):
            raise resource_missing(object_type, str(object_id), param=param)
        return found

    def find(self, object_id: str) -> StripeObject | None:
        """Any stored object by id, whatever its type."""
        with self.lock:
            kind = self._type_by_id.get(object_id)
            if kind is None:
                return None
            self._touched[object_id] = None
            return self.objects[kind][object_id]

    def all(self, object_type: str, *, newest_first: bool = False) -> list[StripeObject]:
        """Live (not deleted) objects of a type, in creation order (or newest first)."""
        with self.lock:
            items = [o for o in self.objects.get(object_type, {}).values() if not o.get("deleted")]
            self._listed.update((o["id"], None) for o in items)
        if newest_first:
            items.reverse()
        return items

    def update(self, obj: StripeObject, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply top-level `changes`; returns `previous_attributes` (only keys that changed)."""
        previous: dict[str, Any] = {}
        with self.lock:
            if isinstance(obj.get("id"), str):
                self._touched[obj["id"]] = None
            for key, value in changes.items():
                old = obj.get(key)
                if old != value or key not in obj:
                    if not key.startswith("_"):
                        previous[key] = copy.deepcopy(old)
                    obj[key] = value
                    self._dirty = True
        return previous

    def mark_deleted(self, obj: StripeObject) -> StripeObject:
        """Stripe keeps deleted objects answerable: retrieve gives `{id, object, deleted}`."""
        with self.lock:
            obj["deleted"] = True
            self._touched[obj["id"]] = None
            self._dirty = True
        return {"id": obj["id"], "object": obj["object"], "deleted": True}

    def remove(self, object_type: str, object_id: str) -> None:
        """Forget an object entirely."""
        with self.lock:
            self._bucket(object_type).pop(object_id, None)
            self._type_by_id.pop(object_id, None)
            self._gone.add(object_id)
            self._dirty = True

    def touch(self) -> None:
        """Mark the state changed (after editing a stored object in place: one read through
        `get`/`require`/`find`/`all`, which is how the next commit finds what changed)."""
        self._blind = True
        self._dirty = True

    # --- time --------------------------------------------------------------------------
    def now(self, clock_id: str | None = None) -> int:
        """Unix time on a test clock, or on the sandbox-wide clock when `clock_id` is None."""
        key = clock_id or SANDBOX_CLOCK
        if key in self._pinned:
            return self._pinned[key]
        if clock_id:
            clock = self._bucket("test_helpers.test_clock").get(clock_id)
            if clock is not None and not clock.get("deleted"):
                return int(clock["frozen_time"])
        return int(time.time()) + self.clock_offset

    def clock_of(self, obj: StripeObject | str | None) -> str | None:
        """The test clock an object lives on: its own `test_clock`, or its customer's."""
        if obj is None:
            return None
        if isinstance(obj, str):
            found = self.find(obj)
            if found is None:
                return None
            obj = found
        if obj.get("object") == "customer":
            return obj.get("test_clock")
        if obj.get("test_clock"):
            return str(obj["test_clock"])
        customer = obj.get("customer")
        if isinstance(customer, str):
            found = self.find(customer)
            return found.get("test_clock") if found else None
        return None

    def now_for(self, obj: StripeObject | str | None) -> int:
        """Now, on the clock of the object (or customer id) given."""
        return self.now(self.clock_of(obj))

    def schedule(
        self,
        at: int,
        kind: str,
        object_id: str,
        *,
        clock_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Timer:
        """Run the handler registered for `kind` when `clock_id`'s time reaches `at`."""
        with self.lock:
            self._timer_seq += 1
            timer = Timer(at, self._timer_seq, kind, object_id, clock_id, data)
            self.timers.push(timer)
            self._timer_ops.append(["+", timer.to_json()])
            self._dirty = True
            return timer

    def cancel_timers(self, object_id: str, kind: str | None = None) -> int:
        """Drop pending timers for an object (of one kind, or all); cheap when it has none."""
        with self.lock:
            dropped = self.timers.cancel(object_id, kind)
            if dropped:
                self._timer_ops.append(["c", object_id, kind])
                self._dirty = True
            return dropped

    def cancel_clock_timers(self, clock_id: str | None) -> int:
        """Drop every pending timer of a clock (the clock is deleted)."""
        with self.lock:
            dropped = self.timers.cancel_clock(clock_id)
            if dropped:
                self._timer_ops.append(["k", clock_id])
                self._dirty = True
            return dropped

    def pending_timers(self, object_id: str | None = None) -> list[Timer]:
        """Pending timers, in time order (of one object, or all)."""
        with self.lock:
            if object_id is not None:
                return self.timers.of(object_id)
            return sorted(self.timers)

    @contextmanager
    def pinned_time(self, clock_id: str | None, at: int) -> Iterator[None]:
        """Make `now(clock_id)` read `at` for the duration (objects created get that time)."""
        key = clock_id or SANDBOX_CLOCK
        before = self._pinned.get(key)
        self._pinned[key] = at
        try:
            yield
        finally:
            if before is None:
                self._pinned.pop(key, None)
            else:
                self._pinned[key] = before

    def run_forward(self, clock_id: str | None, to_ts: int) -> None:
        """Run timers and time hooks of a clock in time order up to `to_ts`.

        The clock reads each timer's time while its handler runs; time hooks are called for
        every stretch between timers, so hooks and timers interleave in time order.
        """
        # What happens as time passes is not caused by the API request that moved the clock.
        token = current_request.set(None)
        try:
            self._run_forward(clock_id, to_ts)
        finally:
            current_request.reset(token)

    def _run_forward(self, clock_id: str | None, to_ts: int) -> None:
        with self.lock:
            cursor = self.now(clock_id)
            while True:
                next_at = self.timers.next_at(clock_id)
                if next_at is None or next_at > to_ts:
                    break
                at = max(next_at, cursor)
                if at > cursor:
                    # Hooks run first and may cancel or add timers: look again afterwards.
                    self._run_hooks(clock_id, cursor, at)
                    cursor = at
                    continue
                timer = self.timers.pop_due(clock_id, to_ts)
                assert timer is not None
                self._timer_ops.append(["-", timer.object_id, timer.seq])
                handler = self.timer_handlers.get(timer.kind)
                if handler is not None:
                    with self.pinned_time(clock_id, at):
                        handler(self, timer)
                self._dirty = True
            if to_ts > cursor:
                self._run_hooks(clock_id, cursor, to_ts)

    def _run_hooks(self, clock_id: str | None, from_ts: int, to_ts: int) -> None:
        with self.pinned_time(clock_id, to_ts):
            for hook in self.time_hooks:
                hook(self, clock_id, from_ts, to_ts)

    def advance_sandbox_clock(self, to_ts: int) -> None:
        """Move the sandbox-wide clock forward to `to_ts` (objects not on a test clock)."""
        with self.lock:
            current = self.now()
            if to_ts < current:
                raise invalid_request(
                    "The sandbox clock cannot move backwards.", param="frozen_time"
                )
            self.run_forward(None, to_ts)
            self.clock_offset += to_ts - self.now()
            self._dirty = True

    def run_due_sandbox_timers(self) -> None:
        """Fire sandbox-clock timers whose time has passed in real time (called per request)."""
        with self.lock:
            next_at = self.timers.next_at(None)
            if next_at is not None and next_at <= self.now():
                self.run_forward(None, self.now())

    # --- events --------------------------------------------------------------------------
    def emit(
        self,
        event_type: str,
        obj: StripeObject,
        previous_attributes: dict[str, Any] | None = None,
    ) -> StripeObject:
        """Record an Event about `obj` (a snapshot) and queue its webhook deliveries."""
        with self.lock:
            request = current_request.get()
            snapshot = self.render(obj)
            data: dict[str, Any] = {"object": snapshot}
            if previous_attributes:
                data["previous_attributes"] = previous_attributes
            endpoints = self.webhooks.endpoints_for(event_type)
            event: StripeObject = {
                "id": self.new_id("evt"),
                "object": "event",
                "api_version": self.api_version,
                "created": self.now_for(obj),
                "data": data,
                "livemode": False,
                "pending_webhooks": len(endpoints),
                "request": {
                    "id": request.id if request else None,
                    "idempotency_key": request.idempotency_key if request else None,
                },
                "type": event_type,
                # Endpoints still owed this event (private; lets a restart resume delivery).
                "_undelivered": list(endpoints),
            }
            self.insert(event)
            self.webhooks.enqueue(event, endpoints)
            return event

    # --- rendering and expansion ------------------------------------------------------
    def render(self, value: Any, expand: list[str] | None = None) -> Any:
        """A deep copy for the wire: private `_` keys dropped, deleted objects reduced,
        `expand` paths (`customer`, `data.customer`, `latest_invoice.payment_intent`) filled."""
        with self.lock:
            out = _public(value)
            for path in expand or []:
                self._expand(out, path.split("."), path, depth=0)
            return out

    def _expand(self, node: Any, parts: list[str], full: str, depth: int) -> None:
        if depth > 4:
            raise invalid_request(
                f"You cannot expand more than 4 levels of a property ({full}).", param="expand"
            )
        if isinstance(node, list):
            for item in node:
                self._expand(item, parts, full, depth)
            return
        if not isinstance(node, dict) or not parts:
            return
        head, rest = parts[0], parts[1:]
        if node.get("object") in ("list", "search_result") and head == "data":
            self._expand(node.get("data", []), rest, full, depth)
            return
        custom = self.expanders.get((str(node.get("object")), head))
        if custom is not None:
            stored = self.find(node["id"]) if isinstance(node.get("id"), str) else None
            node[head] = _public(custom(self, stored if stored is not None else node))
        elif head not in node:
            raise invalid_request(f"This property cannot be expanded ({full}).", param="expand")
        value = node.get(head)
        if isinstance(value, str):
            target = self.find(value)
            if target is None:
                raise invalid_request(f"This property cannot be expanded ({full}).", param="expand")
            value = _public(target)
            node[head] = value
        if rest:
            self._expand(value, rest, full, depth + 1)

    # --- idempotency -----------------------------------------------------------------
    def remember_response(self, key: str, record: dict[str, Any]) -> None:
        with self.lock:
            self.idempotency[key] = record
            self._idem_ops.append([key, record])
            while len(self.idempotency) > IDEMPOTENCY_KEEP:
                self.idempotency.popitem(last=False)
            self._dirty = True

    # --- persistence -----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "format": 1,
                "api_version": self.api_version,
                "clock_offset": self.clock_offset,
                "timer_seq": self._timer_seq,
                "timers": [t.to_json() for t in sorted(self.timers)],
                "objects": {k: list(v.values()) for k, v in self.objects.items()},
                "idempotency": list(self.idempotency.items()),
            }

    def commit(self) -> None:
        """Append what changed since the last commit to the journal (one line, one write).

        Called before a response is sent and after background changes (webhook deliveries):
        once it returns, the change survives the process being killed. Costs what changed
        (each object read or written since the last commit is serialised and compared with
        what the files hold), not what the world weighs.
        """
        with self.lock:
            if self.journal is None or not self._dirty:
                self._touched.clear()
                self._listed.clear()
                self._blind = False
                return
            parts: list[str] = []
            if self._reset_op:
                parts.append('"r":1')
            gone = [i for i in self._gone if i in self._saved and i not in self._type_by_id]
            if gone:
                for object_id in gone:
                    del self._saved[object_id]
                parts.append('"x":' + dumps(gone))
            candidates = dict(self._touched)
            if self._blind:
                candidates.update(self._listed)
            changed: list[str] = []
            for object_id in candidates:
                kind = self._type_by_id.get(object_id)
                if kind is None:
                    continue
                text = dumps(self.objects[kind][object_id])
                saved = self._saved.get(object_id)
                if saved is None or saved[1] != text:
                    self._saved[object_id] = (kind, text)
                    changed.append(text)
            if changed:
                parts.append('"o":[' + ",".join(changed) + "]")
            if self._timer_ops:
                parts.append('"t":' + dumps(self._timer_ops))
            if self._idem_ops:
                parts.append('"i":' + dumps(self._idem_ops))
            meta = (self.clock_offset, self._timer_seq)
            if meta != self._saved_meta:
                parts.append('"m":' + dumps(list(meta)))
                self._saved_meta = meta
            self._forget_changes()
            if parts:
                self.journal.append("{" + ",".join(parts) + "}")
            if (
                self.journal.size > max(self.compact_min_bytes, self._snapshot_size)
                and not self._compacting
            ):
                self._compacting = True
                threading.Thread(
                    target=self._compact_in_background, name="sandbox-compaction", daemon=True
                ).start()

    def _forget_changes(self) -> None:
        self._touched.clear()
        self._listed.clear()
        self._gone.clear()
        self._timer_ops.clear()
        self._idem_ops.clear()
        self._blind = False
        self._reset_op = False
        self._dirty = False

    def save_if_dirty(self) -> None:
        """Commit now if anything changed (every request already does)."""
        self.commit()

    def save(self) -> None:
        """Write a fresh snapshot and start a new journal (no-op without a path)."""
        if self.journal is None:
            return
        with self.lock:
            self._compacting = True
        self._compact()

    def _compact_in_background(self) -> None:
        try:
            self._compact()
        except OSError:
            log.exception("could not compact the sandbox state at %s", self.path)

    def _compact(self) -> None:
        """Snapshot: under the lock, commit and copy references to the serialised objects
        (the strings the journal wrote) and switch journals; write the file outside it."""
        assert self.journal is not None
        with self._compaction_lock:
            try:
                self._write_snapshot()
            finally:
                self._compacting = False

    def _write_snapshot(self) -> None:
        assert self.journal is not None
        with self.lock:
            self.commit()
            saved = list(self._saved.values())
            timers = [t.to_json() for t in self.timers]
            idempotency = list(self.idempotency.items())
            header = {
                "api_version": self.api_version,
                "clock_offset": self.clock_offset,
                "timer_seq": self._timer_seq,
            }
            self.journal.open_next()
            generation = self.journal.generation
        lines = [f'["{kind}",{text}]' for kind, text in saved]
        lines.extend(dumps(["~timer", t]) for t in timers)
        lines.extend(dumps(["~idem", key, record]) for key, record in idempotency)
        self._snapshot_size = self.journal.write_snapshot(generation, header, lines)

    def _load(self) -> None:
        assert self.journal is not None and self.path is not None
        header, lines = self.journal.read_snapshot()
        if "document" in header:
            self._load_document(header["document"])
        else:
            self.clock_offset = int(header.get("clock_offset", 0))
            self._timer_seq = int(header.get("timer_seq", 0))
            timers: list[Timer] = []
            for line in lines:
                if line[0] == "~timer":
                    timers.append(Timer(**line[1]))
                elif line[0] == "~idem":
                    self.idempotency[line[1]] = line[2]
                else:
                    self._put(line[1])
            self.timers = TimerQueue(timers)
        for commit in self.journal.read_commits(int(header.get("generation", 0))):
            self._replay(commit)
        while len(self.idempotency) > IDEMPOTENCY_KEEP:
            self.idempotency.popitem(last=False)
        for kind, bucket in self.objects.items():
            for object_id, obj in bucket.items():
                self._saved[object_id] = (kind, dumps(obj))
        self._saved_meta = (self.clock_offset, self._timer_seq)
        self._snapshot_size = self.path.stat().st_size if self.path.exists() else 0
        self.webhooks.resume()

    def _load_document(self, raw: dict[str, Any]) -> None:
        """A format 1 state file: the whole world as one JSON document."""
        self.clock_offset = int(raw.get("clock_offset", 0))
        self._timer_seq = int(raw.get("timer_seq", 0))
        self.timers = TimerQueue([Timer(**t) for t in raw.get("timers", [])])
        for items in raw.get("objects", {}).values():
            for item in items:
                self._put(item)
        self.idempotency = OrderedDict((k, v) for k, v in raw.get("idempotency", []))

    def _put(self, obj: StripeObject) -> None:
        kind = obj["object"]
        self.objects.setdefault(kind, OrderedDict())[obj["id"]] = obj
        self._type_by_id[obj["id"]] = kind

    def _replay(self, commit: dict[str, Any]) -> None:
        if commit.get("r"):
            self.objects.clear()
            self._type_by_id.clear()
            self.timers.clear()
            self.idempotency.clear()
            self.clock_offset = 0
        for object_id in commit.get("x", []):
            kind = self._type_by_id.pop(object_id, None)
            if kind is not None:
                self.objects[kind].pop(object_id, None)
        for obj in commit.get("o", []):
            self._put(obj)
        for op in commit.get("t", []):
            if op[0] == "+":
                self.timers.push(Timer(**op[1]))
            elif op[0] == "-":
                self.timers.drop(op[1], op[2])
            elif op[0] == "c":
                self.timers.cancel(op[1], op[2])
            elif op[0] == "k":
                self.timers.cancel_clock(op[1])
        for key, record in commit.get("i", []):
            self.idempotency[key] = record
            self.idempotency.move_to_end(key)
        if "m" in commit:
            self.clock_offset, self._timer_seq = int(commit["m"][0]), int(commit["m"][1])

    def reset(self) -> None:
        """Forget everything (objects, timers, idempotency, faults, queued deliveries)."""
        self.webhooks.reset()  # outside the lock: workers may be waiting for it
        with self.lock:
            self.faults.clear()
            self.objects.clear()
            self._type_by_id.clear()
            self.timers.clear()
            self.idempotency.clear()
            self.clock_offset = 0
            self._forget_changes()
            self._saved.clear()
            self._reset_op = True
            self._dirty = True


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("deleted") is True and "object" in value and "id" in value:
            return {"id": value["id"], "object": value["object"], "deleted": True}
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value
