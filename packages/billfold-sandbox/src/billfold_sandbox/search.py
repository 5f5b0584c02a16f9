"""Stripe's search query language, for `/v1/<resource>/search` endpoints.

Supports `field:'value'` (exact), `field~'value'` (substring), `-field:'value'` (negation),
`field>123` / `>=` / `<` / `<=` (numbers), `metadata['key']:'value'`, `field:null`, and clauses
joined by `AND` or by `OR` (not both, as Stripe requires).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.routing import Call
from billfold_sandbox.state import StripeObject

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>[a-z_\.]+)(?:\[(?P<q>['"])(?P<key>.*?)(?P=q)\])?"""
    r"""\s*(?P<op>:|~|>=|<=|>|<)\s*"""
    r"""(?:(?P<vq>['"])(?P<value>.*?)(?P=vq)|(?P<bare>[^\s]+))\s*""",
)
_JOIN = re.compile(r"\s+(AND|OR)\s+")

Getter = Callable[[StripeObject], Any]


def _invalid(query: str) -> Exception:
    return invalid_request(
        f"Invalid search query: {query!r}. See https://stripe.com/docs/search#search-query-language",
        param="query",
    )


def parse_query(query: str) -> tuple[str, list[dict[str, Any]]]:
    """Split a query into its joiner ("AND"/"OR") and clauses."""
    pieces = _JOIN.split(query.strip())
    clauses_text = pieces[0::2]
    joiners = set(pieces[1::2])
    if len(joiners) > 1:
        raise invalid_request("Search queries cannot mix AND and OR.", param="query")
    clauses = []
    for text in clauses_text:
        match = _CLAUSE.fullmatch(text)
        if not match:
            raise _invalid(query)
        value = match.group("value") if match.group("vq") else match.group("bare")
        clauses.append(
            {
                "negate": bool(match.group("neg")),
                "field": match.group("field"),
                "key": match.group("key"),
                "op": match.group("op"),
                "value": value,
            }
        )
    return (joiners.pop() if joiners else "AND"), clauses


def _matches(obj: StripeObject, clause: dict[str, Any], fields: dict[str, Getter]) -> bool:
    name = clause["field"]
    if name == "metadata":
        if clause["key"] is None:
            raise invalid_request("metadata must be searched as metadata['key'].", param="query")
        actual: Any = (obj.get("metadata") or {}).get(clause["key"])
    elif name in fields:
        actual = fields[name](obj)
    else:
        raise invalid_request(
            f"Field '{name}' is an unsupported search field for this resource. "
            f"Supported fields: {', '.join(sorted([*fields, 'metadata']))}.",
            param="query",
        )
    op, wanted = clause["op"], clause["value"]
    if op == ":":
        if wanted == "null" and clause.get("key") is None:
            result = actual is None
        else:
            result = actual is not None and str(actual).lower() == str(wanted).lower()
    elif op == "~":
        result = actual is not None and str(wanted).lower() in str(actual).lower()
    else:
        try:
            left, right = float(actual), float(wanted)
        except (TypeError, ValueError):
            return False
        result = {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[
            op
        ]
    return not result if clause["negate"] else result


def search_response(
    call: Call, objects: list[StripeObject], fields: dict[str, Getter]
) -> StripeObject:
    """Filter newest-first `objects` by `call.params["query"]` and page them Stripe's way."""
    joiner, clauses = parse_query(call.params["query"])
    combine = all if joiner == "AND" else any
    found = [o for o in objects if combine(_matches(o, c, fields) for c in clauses)]
    limit = call.params.get("limit", 10)
    page = call.params.get("page")
    offset = 0
    if page:
        try:
            offset = int(page.removeprefix("page_"))
        except ValueError:
            raise invalid_request("Invalid page token.", param="page") from None
    chunk = found[offset : offset + limit]
    has_more = offset + limit < len(found)
    result: StripeObject = {
        "object": "search_result",
        "data": chunk,
        "has_more": has_more,
        "next_page": f"page_{offset + limit}" if has_more else None,
        "url": call.request.url.path.removeprefix(call.request.scope.get("root_path", "")),
    }
    if "total_count" in (call.params.get("expand") or []):
        result["total_count"] = len(found)  # Stripe's includable field
    return result
