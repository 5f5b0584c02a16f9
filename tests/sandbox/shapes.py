"""Compare a sandbox object's keys with Stripe's own sample object for the pinned API version.

Stripe's samples are vendored in `tests/stripe_fixtures/fixtures3.json` (MIT, with its licence),
as `resources.<name>`. Use `assert_stripe_shape(obj, "customer")` in any sandbox test, and
`stripe_resources()` for the samples themselves.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "stripe_fixtures" / "fixtures3.json"


@lru_cache(maxsize=1)
def stripe_resources() -> dict[str, Any]:
    """Stripe's sample objects by resource name (do not modify: shared by every caller)."""
    data: dict[str, Any] = json.loads(FIXTURES.read_text(encoding="utf-8"))
    return dict(data["resources"])


def stripe_sample(resource: str) -> dict[str, Any]:
    """Stripe's sample object for `resource` (e.g. "customer", "checkout.session")."""
    resources = stripe_resources()
    if resource not in resources:
        raise AssertionError(f"{resource!r} is not a resource in {FIXTURES.name}")
    sample: dict[str, Any] = resources[resource]
    return sample


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        converted: dict[str, Any] = obj.to_dict()
        return converted
    return dict(obj)


def shape_differences(
    obj: Any,
    resource: str,
    *,
    allow_extra: tuple[str, ...] = (),
    allow_missing: tuple[str, ...] = (),
    nested: tuple[str, ...] = (),
) -> list[str]:
    """What differs between `obj`'s keys and Stripe's sample (empty when they match).

    `nested` names sub-objects (dotted, e.g. "invoice_settings") whose keys are compared too
    when both sides hold a dict there.
    """
    sample = stripe_sample(resource)
    mine = _as_dict(obj)
    problems = []
    missing = set(sample) - set(mine) - set(allow_missing)
    extra = set(mine) - set(sample) - set(allow_extra)
    if missing:
        problems.append(f"{resource}: missing keys {sorted(missing)}")
    if extra:
        problems.append(f"{resource}: keys Stripe does not have {sorted(extra)}")
    if mine.get("object") != sample.get("object"):
        problems.append(f"{resource}: object is {mine.get('object')!r}, not {sample['object']!r}")
    for path in nested:
        a: Any = mine
        b: Any = sample
        for part in path.split("."):
            a = a.get(part) if isinstance(a, dict) else None
            b = b.get(part) if isinstance(b, dict) else None
        if isinstance(a, dict) and isinstance(b, dict) and set(a) != set(b):
            problems.append(f"{resource}.{path}: keys {sorted(a)} differ from Stripe's {sorted(b)}")
    return problems


def assert_stripe_shape(
    obj: Any,
    resource: str,
    *,
    allow_extra: tuple[str, ...] = (),
    allow_missing: tuple[str, ...] = (),
    nested: tuple[str, ...] = (),
) -> None:
    """Fail unless `obj` (a dict or a StripeObject) has exactly the keys Stripe's sample has.

    `allow_missing` lists keys Stripe only sends in some cases (e.g. expandable or
    includable fields); `allow_extra` the sandbox's justified additions (say why at the call).
    """
    problems = shape_differences(
        obj, resource, allow_extra=allow_extra, allow_missing=allow_missing, nested=nested
    )
    assert not problems, "; ".join(problems)
