"""The whole OpenAPI schema probed by schemathesis, in process, on both databases, with and
without a token: no answer is a server error and every answer is one the schema declares (its
status, content type, body and headers).

`BILLFOLD_SCHEMATHESIS_EXAMPLES` sets the examples per operation (25 here, more in CI); the
examples are derandomized, so a run is the same every time.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billfold.config import Settings
from tests.subscriptions.fixtures import bearer

EXAMPLES = int(os.environ.get("BILLFOLD_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def billing_settings(billing_settings: Settings) -> Settings:
    """No rate limit in the way: every case reaches its route (429 is tested on its own)."""
    unlimited = "1000000/minute"
    return billing_settings.model_copy(
        update={
            "rate_limit": unlimited,
            "rate_limit_checkout": unlimited,
            "rate_limit_address": unlimited,
            "rate_limit_auth_failures": unlimited,
        }
    )


def generated_cases(app: FastAPI) -> list[Any]:
    """`EXAMPLES` cases of every operation of the app's schema (valid and invalid ones)."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    cases: list[Any] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def collect(case: Any) -> None:
            cases.append(case)

        collect()
    return cases


async def send(api: httpx.AsyncClient, case: Any, headers: dict[str, str]) -> httpx.Response:
    sent = case.as_transport_kwargs(base_url=str(api.base_url), headers=headers)
    sent.pop("cookies", None)
    return await api.request(
        sent.pop("method"),
        sent.pop("url"),
        headers=sent.pop("headers", None),
        params=sent.pop("params", None),
        **{k: v for k, v in sent.items() if k in ("json", "content", "data", "files")},
    )


@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "token"])
async def test_the_whole_schema_answers_as_it_says(
    api: httpx.AsyncClient,
    billing_app: FastAPI,
    billing_settings: Settings,
    synced: dict[str, str],
    with_token: bool,
) -> None:
    headers = bearer(billing_settings, "schemathesis-user") if with_token else {}
    failures: list[str] = []
    cases = generated_cases(billing_app)
    assert cases
    for case in cases:
        try:
            response = await send(api, case, headers)
        except Exception as raised:  # the app raised (a 500): record it and go on
            failures.append(f"{case.operation.label}: 500: {type(raised).__name__}: {raised}")
            continue
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as failure:  # every failure, not the first only
            failures.append(f"{case.operation.label}: {response.status_code}: {failure}")
    kinds = Counter(
        f"{failure.split(': ', 2)[0]} {failure.split(': ', 2)[1]}: {line.strip()}"
        for failure in failures
        for line in failure.splitlines()
        if line.strip().startswith("- ")
    )
    assert not failures, (
        f"{len(failures)} failures:\n"
        + "\n".join(f"{count:4} {kind}" for kind, count in kinds.most_common())
        + "\n\n"
        + "\n\n".join(failure[:2000] for failure in failures[:5])
    )
