"""Declared parameters: each route says what it accepts, and anything else is refused.

A spec is a dict of name -> field, e.g.::

    CREATE = {
        "email": string(),
        "metadata": metadata(),
        "invoice_settings": obj({"default_payment_method": string(nullable=True)}),
        "items": array(obj({"price": string(required=True), "quantity": integer(min=1)})),
    }

`validate(spec, raw)` returns only the keys the caller sent, converted to Python types (an empty
string sent for a `nullable` field becomes None, meaning "unset"). Unknown keys raise Stripe's
"Received unknown parameter: x" with `param` set; wrong types and missing required keys raise the
matching `invalid_request_error`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billfold_sandbox.errors import (
    empty_parameter,
    invalid_request,
    missing_parameter,
    unknown_parameter,
)
from billfold_sandbox.wire import param_name

Path = tuple[str | int, ...]


@dataclass
class Field:
    """One parameter: how to read it and whether it must be there."""

    parse: Callable[[Any, Path], Any]
    required: bool = False
    nullable: bool = False
    children: dict[str, Field] | None = None  # the declared keys of an obj()
    item: Field | None = None  # what an array() holds


def _scalar(value: Any, path: Path) -> str:
    if isinstance(value, (dict, list)):
        raise invalid_request(
            f"Invalid {param_name(path)}: must be a string, not an object or array.",
            param=param_name(path),
        )
    return str(value)


def string(
    *,
    required: bool = False,
    nullable: bool = False,
    max_length: int = 5000,
    choices: tuple[str, ...] | None = None,
) -> Field:
    """A string; `choices` restricts it to an enumeration."""

    def parse(value: Any, path: Path) -> Any:
        text = _scalar(value, path)
        if len(text) > max_length:
            raise invalid_request(
                f"Invalid {param_name(path)}: must be at most {max_length} characters",
                param=param_name(path),
            )
        if choices is not None and text == "":
            raise empty_parameter(param_name(path))
        if choices is not None and text not in choices:
            raise invalid_request(
                f"Invalid {param_name(path)}: must be one of {', '.join(choices)}",
                param=param_name(path),
            )
        return text

    return Field(parse, required, nullable)


def enum(*choices: str, required: bool = False, nullable: bool = False) -> Field:
    return string(required=required, nullable=nullable, choices=choices)


def integer(
    *,
    required: bool = False,
    nullable: bool = False,
    min: int | None = None,
    max: int | None = None,
) -> Field:
    def parse(value: Any, path: Path) -> Any:
        text = _scalar(value, path)
        if text == "":
            raise empty_parameter(param_name(path))
        try:
            number = int(text)
        except ValueError:
            raise invalid_request(
                f"Invalid integer: {text}", param=param_name(path), code="parameter_invalid_integer"
            ) from None
        if min is not None and number < min:
            raise invalid_request(
                f"Invalid {param_name(path)}: must be greater than or equal to {min}",
                param=param_name(path),
            )
        if max is not None and number > max:
            raise invalid_request(
                f"Invalid {param_name(path)}: must be less than or equal to {max}",
                param=param_name(path),
            )
        return number

    return Field(parse, required, nullable)


def number(
    *,
    required: bool = False,
    nullable: bool = False,
    min: float | None = None,
    max: float | None = None,
) -> Field:
    """A decimal (percent_off, unit_amount_decimal) as a float."""

    def parse(value: Any, path: Path) -> Any:
        text = _scalar(value, path)
        try:
            result = float(text)
        except ValueError:
            raise invalid_request(f"Invalid decimal: {text}", param=param_name(path)) from None
        if (min is not None and result < min) or (max is not None and result > max):
            raise invalid_request(
                f"Invalid {param_name(path)}: must be between {min} and {max}",
                param=param_name(path),
            )
        return result

    return Field(parse, required, nullable)


def boolean(*, required: bool = False, nullable: bool = False) -> Field:
    def parse(value: Any, path: Path) -> Any:
        text = _scalar(value, path).lower()
        if text == "":
            raise empty_parameter(param_name(path))
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise invalid_request(f"Invalid boolean: {text}", param=param_name(path))

    return Field(parse, required, nullable)


def timestamp(*, required: bool = False, nullable: bool = False, now_ok: bool = False) -> Field:
    """A Unix timestamp; with `now_ok`, the literal `now` is kept as the string "now"."""

    inner = integer()

    def parse(value: Any, path: Path) -> Any:
        if now_ok and value == "now":
            return "now"
        return inner.parse(value, path)

    return Field(parse, required, nullable)


def metadata(*, required: bool = False) -> Field:
    """Stripe metadata: up to 50 keys; `metadata[k]=""` deletes k, `metadata=""` clears all.

    Parsed as a dict whose None values mean "delete this key" (see `apply_metadata`).
    """

    def parse(value: Any, path: Path) -> Any:
        if value == "":
            return None
        if not isinstance(value, dict):
            raise invalid_request(
                "Invalid metadata: metadata must be a hash.", param=param_name(path)
            )
        if len(value) > 50:
            raise invalid_request(
                "Invalid metadata: metadata can have at most 50 keys.", param=param_name(path)
            )
        out: dict[str, str | None] = {}
        for key, item in value.items():
            sub = param_name((*path, key))
            if len(key) > 40:
                raise invalid_request(
                    f"Invalid {sub}: metadata keys can be at most 40 characters.", param=sub
                )
            text = _scalar(item, (*path, key))
            if len(text) > 500:
                raise invalid_request(
                    f"Invalid {sub}: metadata values can be at most 500 characters.", param=sub
                )
            out[key] = text if text != "" else None
        return out

    return Field(parse, required, nullable=True)


def apply_metadata(
    current: dict[str, str] | None, update: dict[str, str | None] | None
) -> dict[str, str]:
    """Merge a parsed `metadata` parameter into an object's metadata, Stripe's way."""
    if update is None:
        return {}
    merged = dict(current or {})
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def obj(fields: dict[str, Field], *, required: bool = False, nullable: bool = False) -> Field:
    """A nested hash with its own declared keys."""

    def parse(value: Any, path: Path) -> Any:
        if not isinstance(value, dict):
            raise invalid_request(
                f"Invalid {param_name(path)}: must be an object", param=param_name(path)
            )
        return _validate(fields, value, path)

    return Field(parse, required, nullable, children=fields)


def hash_of_strings(*, required: bool = False, nullable: bool = False) -> Field:
    """A free-form hash of strings (e.g. `subscription_data[metadata]` without limits)."""

    def parse(value: Any, path: Path) -> Any:
        if not isinstance(value, dict):
            raise invalid_request(
                f"Invalid {param_name(path)}: must be an object", param=param_name(path)
            )
        return {k: _scalar(v, (*path, k)) for k, v in value.items()}

    return Field(parse, required, nullable)


def array(
    item: Field, *, required: bool = False, nullable: bool = False, max_items: int = 100
) -> Field:
    """A list (sent as `a[0]`, `a[1]` or `a[]`)."""

    def parse(value: Any, path: Path) -> Any:
        if isinstance(value, dict) and not value:
            return []
        if not isinstance(value, list):
            if isinstance(value, str):
                # A single value where an array is expected: Stripe refuses it.
                raise invalid_request(
                    f"Invalid array: {param_name(path)} must be an array", param=param_name(path)
                )
            raise invalid_request(
                f"Invalid array: {param_name(path)} must be an array", param=param_name(path)
            )
        if len(value) > max_items:
            raise invalid_request(
                f"Invalid {param_name(path)}: at most {max_items} items", param=param_name(path)
            )
        return [item.parse(v, (*path, i)) for i, v in enumerate(value)]

    return Field(parse, required, nullable, item=item)


def anything(*, required: bool = False) -> Field:
    """Accepted and passed through undecoded (for parameters the sandbox ignores)."""
    return Field(lambda value, path: value, required, nullable=True)


def range_filter() -> Field:
    """`created=123` or `created[gte]=1&created[lt]=2`: returns a dict of op -> int."""
    ops = {op: integer() for op in ("gt", "gte", "lt", "lte")}

    def parse(value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return _validate(ops, value, path)
        return {"eq": integer().parse(value, path)}

    return Field(parse)


def in_range(value: int | None, bounds: dict[str, int] | None) -> bool:
    """Whether `value` satisfies a parsed `range_filter`."""
    if not bounds:
        return True
    if value is None:
        return False
    checks = {
        "eq": lambda b: value == b,
        "gt": lambda b: value > b,
        "gte": lambda b: value >= b,
        "lt": lambda b: value < b,
        "lte": lambda b: value <= b,
    }
    return all(checks[op](bound) for op, bound in bounds.items())


# Parameters every list endpoint takes (added by the router for `list=True` routes).
LIST_PARAMS: dict[str, Field] = {
    "limit": integer(min=1, max=100),
    "starting_after": string(),
    "ending_before": string(),
}
SEARCH_PARAMS: dict[str, Field] = {
    "query": string(required=True, max_length=10000),
    "limit": integer(min=1, max=100),
    "page": string(),
}
EXPAND_PARAMS: dict[str, Field] = {"expand": array(string(), max_items=100)}


def _validate(spec: dict[str, Field], raw: dict[str, Any], path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        declared = spec.get(key)
        if declared is None:
            raise unknown_parameter(param_name((*path, key)))
        if value == "" and declared.nullable:
            out[key] = None
            continue
        if value == "" and not declared.nullable and declared.required:
            raise missing_parameter(param_name((*path, key)))
        out[key] = declared.parse(value, (*path, key))
    for key, declared in spec.items():
        if declared.required and key not in out:
            raise missing_parameter(param_name((*path, key)))
    return out


def validate(spec: dict[str, Field], raw: dict[str, Any]) -> dict[str, Any]:
    """Check decoded request parameters against a route's spec (see the module docstring)."""
    return _validate(spec, raw, ())
