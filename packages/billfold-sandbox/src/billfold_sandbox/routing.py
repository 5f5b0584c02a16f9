"""How resource modules declare their routes: a `SandboxRouter` per module.

    router = SandboxRouter()

    @router.post("/v1/customers", params=CUSTOMER_CREATE)
    def create_customer(call: Call) -> StripeObject: ...

Handlers are plain (synchronous) functions run under the state lock, one at a time, in a worker
thread (the app's dispatcher: long work never holds the event loop). They get a
`Call` and return a stored object (rendered with `expand[]` by the app), a list object from
`call.list_response(...)`, or a Starlette `Response` (hosted pages).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import EXPAND_PARAMS, LIST_PARAMS, SEARCH_PARAMS, Field
from billfold_sandbox.state import (
    Expander,
    Loader,
    SandboxState,
    StripeObject,
    TimeHook,
    TimerHandler,
)

Handler = Callable[["Call"], "StripeObject | Response | Awaitable[StripeObject]"]


@dataclass
class Call:
    """One API call as a handler sees it."""

    state: SandboxState
    params: dict[str, Any]  # validated against the route's spec (only keys sent)
    path: dict[str, str]  # path parameters, e.g. call.path["id"]
    request: Request
    request_id: str
    idempotency_key: str | None = None
    api_key: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # decoded, unvalidated parameters

    # Shortcuts to the state, so handlers read naturally.
    def now(self, clock_id: str | None = None) -> int:
        return self.state.now(clock_id)

    def emit(
        self, event_type: str, obj: StripeObject, previous: dict[str, Any] | None = None
    ) -> StripeObject:
        return self.state.emit(event_type, obj, previous)

    def require(self, object_type: str, object_id: str, *, param: str = "id") -> StripeObject:
        return self.state.require(object_type, object_id, param=param)

    def list_response(self, objects: list[StripeObject], *, url: str | None = None) -> StripeObject:
        """Page newest-first `objects` with `limit`/`starting_after`/`ending_before`."""
        return paginate(
            objects,
            limit=self.params.get("limit", 10),
            starting_after=self.params.get("starting_after"),
            ending_before=self.params.get("ending_before"),
            url=url or self.request.url.path.removeprefix(self.request.scope.get("root_path", "")),
        )


def paginate(
    objects: list[StripeObject],
    *,
    limit: int = 10,
    starting_after: str | None = None,
    ending_before: str | None = None,
    url: str,
) -> StripeObject:
    """A Stripe list object over `objects` (already newest first)."""
    ids = [o["id"] for o in objects]
    if starting_after and ending_before:
        raise invalid_request(
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="starting_after",
        )
    if starting_after:
        if starting_after not in ids:
            raise invalid_request(
                f"No such object: '{starting_after}'",
                param="starting_after",
                code="resource_missing",
                status=404,
            )
        start = ids.index(starting_after) + 1
        page = objects[start : start + limit]
        has_more = start + limit < len(objects)
    elif ending_before:
        if ending_before not in ids:
            raise invalid_request(
                f"No such object: '{ending_before}'",
                param="ending_before",
                code="resource_missing",
                status=404,
            )
        end = ids.index(ending_before)
        begin = max(0, end - limit)
        page = objects[begin:end]
        has_more = begin > 0
    else:
        page = objects[:limit]
        has_more = len(objects) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    params: dict[str, Field]
    auth: bool = True
    page: bool = False  # a hosted page: no auth, no parameter checks, returns a Response


class SandboxRouter:
    """The routes, timers, hooks, expanders and loaders one resource module contributes."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.time_hooks: list[TimeHook] = []
        self.timers: dict[str, TimerHandler] = {}
        self.expanders: dict[tuple[str, str], Expander] = {}
        self.loaders: dict[str, Loader] = {}

    def _add(
        self,
        method: str,
        path: str,
        params: dict[str, Field] | None,
        *,
        list: bool = False,
        search: bool = False,
        auth: bool = True,
        page: bool = False,
    ) -> Callable[[Handler], Handler]:
        spec: dict[str, Field] = {} if page else dict(EXPAND_PARAMS)
        if list:
            spec.update(LIST_PARAMS)
        if search:
            spec.update(SEARCH_PARAMS)
        spec.update(params or {})

        def decorate(fn: Handler) -> Handler:
            self.routes.append(Route(method, path, fn, spec, auth=auth and not page, page=page))
            return fn

        return decorate

    def get(
        self,
        path: str,
        params: dict[str, Field] | None = None,
        *,
        list: bool = False,
        search: bool = False,
        auth: bool = True,
    ) -> Callable[[Handler], Handler]:
        """A GET route; `list=True` adds limit/starting_after/ending_before, `search=True`
        adds query/limit/page."""
        return self._add("GET", path, params, list=list, search=search, auth=auth)

    def post(
        self, path: str, params: dict[str, Field] | None = None, *, auth: bool = True
    ) -> Callable[[Handler], Handler]:
        return self._add("POST", path, params, auth=auth)

    def delete(
        self, path: str, params: dict[str, Field] | None = None
    ) -> Callable[[Handler], Handler]:
        return self._add("DELETE", path, params)

    def page(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """A hosted page (outside /v1): no API key, `call.raw` holds the form/query fields."""
        return self._add(method.upper(), path, None, page=True)

    def time_hook(self, fn: TimeHook) -> TimeHook:
        """Register `fn(state, clock_id, from_ts, to_ts)`, run whenever a clock advances."""
        self.time_hooks.append(fn)
        return fn

    def timer(self, kind: str) -> Callable[[TimerHandler], TimerHandler]:
        """Register the handler for timers of `kind` (see `SandboxState.schedule`)."""

        def decorate(fn: TimerHandler) -> TimerHandler:
            self.timers[kind] = fn
            return fn

        return decorate

    def expander(self, object_type: str, field: str) -> Callable[[Expander], Expander]:
        """Register `fn(state, obj) -> value` for `expand[]=field` on `object_type`."""

        def decorate(fn: Expander) -> Expander:
            self.expanders[(object_type, field)] = fn
            return fn

        return decorate

    def loader(self, object_type: str) -> Callable[[Loader], Loader]:
        """Register `fn(state, id) -> object | None` called when an id is not stored."""

        def decorate(fn: Loader) -> Loader:
            self.loaders[object_type] = fn
            return fn

        return decorate

    def install(self, state: SandboxState) -> None:
        for hook in self.time_hooks:
            if hook not in state.time_hooks:
                state.register_time_hook(hook)
        for kind, handler in self.timers.items():
            state.register_timer(kind, handler)
        for (object_type, name), expander in self.expanders.items():
            state.register_expander(object_type, name, expander)
        for object_type, loader in self.loaders.items():
            state.register_loader(object_type, loader)
