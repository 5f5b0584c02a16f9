"""Stripe's wire format: form bodies and query strings with nested `a[b][0][c]` keys.

`decode_form` turns the flat pairs Stripe's SDKs send into nested dicts and lists; the key
path of every leaf is kept so errors can name the parameter exactly as the caller spelt it.
"""

from __future__ import annotations

import re
from typing import Any

from billfold_sandbox.errors import invalid_request

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def _parts(key: str) -> list[str]:
    match = _KEY.match(key)
    if not match:
        raise invalid_request(f"Invalid parameter name: {key}", param=key)
    return [match.group(1), *_PART.findall(match.group(2))]


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode `[("metadata[k]", "v"), ("items[0][price]", "p")]` into nested dicts and lists.

    Lists come from integer or empty (`a[]`) indexes; indexes are ordered numerically.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _parts(key)
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                # `a[]=x`: append a fresh index.
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = {}
                    node[part] = child
                elif not isinstance(child, dict):
                    raise invalid_request(
                        f"Invalid parameter: {key} mixes a value and nested keys.", param=key
                    )
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isascii() and k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def param_name(path: tuple[str | int, ...]) -> str:
    """`("items", 0, "price")` -> `items[0][price]`, the way Stripe names a parameter."""
    if not path:
        return ""
    head, *rest = path
    return str(head) + "".join(f"[{p}]" for p in rest)
