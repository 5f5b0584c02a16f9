"""Bad configuration gets one sentence naming the setting, the value and what is allowed: never
a traceback, from any directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from billfold.config import Settings, describe_validation_error
from billfold.errors import ConfigurationError
from tests.config.cli_support import run_billfold


@pytest.mark.parametrize(
    ("env", "named", "value"),
    [
        ({"BILLFOLD_ENV": "prod"}, "BILLFOLD_ENV", "'prod'"),
        ({"STRIPE_PRICE_IDS": "{bad"}, "STRIPE_PRICE_IDS", "'{bad'"),
        ({"STRIPE_PRICE_IDS": "[1, 2]"}, "STRIPE_PRICE_IDS", "'[1, 2]'"),
        ({"STRIPE_DEFAULT_CURRENCY": "xxx"}, "STRIPE_DEFAULT_CURRENCY", "'xxx'"),
        ({"BILLFOLD_CATALOG_FILE": "missing.toml"}, "BILLFOLD_CATALOG_FILE", "'missing.toml'"),
        ({"BILLFOLD_PORT": "eighty"}, "BILLFOLD_PORT", "'eighty'"),
    ],
)
def test_cli_says_one_sentence(tmp_path: Path, env: dict[str, str], named: str, value: str) -> None:
    result = run_billfold("catalog", "show", cwd=tmp_path, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and named in lines[0] and value in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_price_ids_still_accept_both_forms() -> None:
    assert Settings(stripe_price_ids='{"pro": "price_1"}').stripe_price_ids == {"pro": "price_1"}
    assert Settings(stripe_price_ids="pro=price_1, team=price_2").stripe_price_ids == {
        "pro": "price_1",
        "team": "price_2",
    }


def test_unknown_currency_is_refused_not_usd(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="STRIPE_DEFAULT_CURRENCY is 'xxx'"):
        Settings(stripe_default_currency="xxx", data_dir=tmp_path).check()
    Settings(stripe_default_currency="EUR", data_dir=tmp_path).check()


def test_validation_error_names_the_variable() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        Settings(environment="prod")  # type: ignore[arg-type]
    assert describe_validation_error(caught.value).startswith("BILLFOLD_ENV is 'prod'")
