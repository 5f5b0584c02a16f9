"""Compare a sandbox route's declared parameters with the `stripe` SDK's typed params.

`undeclared_sdk_parameters("POST", "/v1/customers", stripe.params.CustomerCreateParams)` lists
every parameter (nested ones as `invoice_settings[footer]`) the SDK lets a caller send that the
route would refuse as unknown. Nested hashes and arrays of hashes are followed where the route
declares them with `obj()` / `array(obj())`; `anything()` accepts whatever is below it.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from billfold_sandbox.app import load_routers
from billfold_sandbox.params import Field

REQUEST_OPTIONS = {
    "api_key",
    "content_type",
    "headers",
    "idempotency_key",
    "max_network_retries",
    "stripe_account",
    "stripe_context",
    "stripe_version",
}
_NAME = re.compile(r"\b([A-Z][A-Za-z0-9]*Params[A-Za-z0-9]*)\b")


def _nested_class(annotation: Any, module: Any) -> tuple[type | None, bool]:
    """The TypedDict an annotation points at (if any) and whether it is a list of them."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    is_list = "List[" in text
    for name in _NAME.findall(text):
        found = getattr(module, name, None)
        if isinstance(found, type):
            return found, is_list
    return None, is_list


def _compare(fields: dict[str, Field], typed: type, prefix: str, out: list[str]) -> None:
    module = sys.modules[typed.__module__]
    for name, annotation in typed.__annotations__.items():
        if not prefix and name in REQUEST_OPTIONS:
            continue
        label = f"{prefix}[{name}]" if prefix else name
        field = fields.get(name)
        if field is None:
            out.append(label)
            continue
        nested, is_list = _nested_class(annotation, module)
        if nested is None:
            continue
        target = field.item if is_list and field.item is not None else field
        if target.children is not None:
            _compare(target.children, nested, label + ("[0]" if is_list else ""), out)


def undeclared_sdk_parameters(method: str, path: str, typed: type) -> list[str]:
    """Parameters the SDK's `typed` params allow that the route `method path` would refuse."""
    routes = {(r.method, r.path): r for router in load_routers() for r in router.routes}
    route = routes[(method.upper(), path)]
    missing: list[str] = []
    _compare(route.params, typed, "", missing)
    return missing
