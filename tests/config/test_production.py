"""BILLFOLD_ENV=production means production: real Stripe keys and secrets or no start; the
sandbox and its test helpers are never mounted; one start-up line says the mode and why."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from billfold.app import create_app
from billfold.config import Settings
from billfold.db.engine import Database
from billfold.errors import ConfigurationError

JWT = "j" * 40


def production(tmp_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "environment": "production",
        "data_dir": tmp_path,
        "stripe_secret_key": "sk_test_123",
        "stripe_webhook_secret": ["whsec_abc"],
        "jwt_secret": JWT,
    }
    return Settings(**{**base, **values})


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"stripe_secret_key": None}, "STRIPE_SECRET_KEY"),
        ({"stripe_webhook_secret": []}, "STRIPE_WEBHOOK_SECRET"),
        ({"jwt_secret": None}, "BILLFOLD_JWT_SECRET"),
    ],
)
def test_production_refuses_to_start_without(
    tmp_path: Path, missing: dict[str, Any], named: str
) -> None:
    settings = production(tmp_path, **missing)
    with pytest.raises(ConfigurationError, match=named):
        settings.check()
    assert not settings.sandbox_mode
    assert settings.webhook_secrets == (
        ["whsec_abc"] if "stripe_webhook_secret" not in missing else []
    )


async def test_production_mounts_no_sandbox_and_no_test_helpers(tmp_path: Path) -> None:
    settings = production(tmp_path)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        app = create_app(settings, database=database)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path in (
                "/stripe-sandbox/v1/customers",
                "/stripe-sandbox/v1/test_helpers/checkout/sessions/cs_x/complete",
            ):
                response = await client.post(
                    path, headers={"Authorization": "Bearer sk_test_billfold_sandbox"}
                )
                assert response.status_code == 404, path
        assert not hasattr(app.state, "sandbox")
    finally:
        await database.dispose()


def test_mode_line_names_the_mode_and_why(tmp_path: Path) -> None:
    dev = Settings(data_dir=tmp_path, environment="development")
    assert dev.mode_line() == "billfold: development mode, Stripe sandbox (no STRIPE_SECRET_KEY)"
    live = production(tmp_path, stripe_secret_key="sk_live_1")
    assert (
        live.mode_line()
        == "billfold: production mode, live Stripe (STRIPE_SECRET_KEY is a live key)"
    )
    test_key = production(tmp_path)
    assert "production mode, Stripe test mode" in test_key.mode_line()


async def test_start_up_logs_the_mode_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = production(tmp_path)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    app = create_app(settings, database=database, stripe_gateway=object())  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="billfold")
    logger = logging.getLogger("billfold")
    logger.addHandler(caplog.handler)
    try:
        async with app.router.lifespan_context(app):
            pass
    finally:
        logger.removeHandler(caplog.handler)
        await database.dispose()
    # The handler may see a record twice (its own and through propagation): count records.
    records = {id(r): r.getMessage() for r in caplog.records if r.name == "billfold"}
    assert list(records.values()) == [settings.mode_line()]
