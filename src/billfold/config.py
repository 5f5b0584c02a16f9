"""Settings from the environment.

The seed documents' `STRIPE_*` and `FRONTEND_URL` names work as they are; billfold's own settings
are `BILLFOLD_*`. `Settings.check()` stops start-up with one sentence naming the wrong variable.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from limits import parse as parse_rate_limit
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from billfold.errors import ConfigurationError
from billfold.money import SUPPORTED_CURRENCIES

# The embedded Stripe sandbox (no STRIPE_SECRET_KEY set): mounted under billfold's own server at
# this path, called with this key, and signing the webhooks it sends billfold with this secret.
SANDBOX_MOUNT_PATH = "/stripe-sandbox"
SANDBOX_SECRET_KEY = "sk_test_billfold_sandbox"
SANDBOX_PUBLISHABLE_KEY = "pk_test_billfold_sandbox"
SANDBOX_WEBHOOK_SECRET = "whsec_billfold_sandbox_local_only"


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    # --- the seeds' names -------------------------------------------------------------
    stripe_secret_key: str | None = Field(
        default=None, validation_alias=_alias("STRIPE_SECRET_KEY")
    )
    stripe_publishable_key: str | None = Field(
        default=None, validation_alias=_alias("STRIPE_PUBLISHABLE_KEY")
    )
    # Several secrets may be given, comma separated, so a secret can be rotated.
    stripe_webhook_secret: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_alias("STRIPE_WEBHOOK_SECRET")
    )
    stripe_success_url: str | None = Field(
        default=None, validation_alias=_alias("STRIPE_SUCCESS_URL")
    )
    stripe_cancel_url: str | None = Field(
        default=None, validation_alias=_alias("STRIPE_CANCEL_URL")
    )
    stripe_default_currency: str = Field(
        default="usd", validation_alias=_alias("STRIPE_DEFAULT_CURRENCY")
    )
    frontend_url: str = Field(
        default="http://localhost:3000", validation_alias=_alias("FRONTEND_URL")
    )
    stripe_premium_monthly_price_id: str | None = Field(
        default=None, validation_alias=_alias("STRIPE_PREMIUM_MONTHLY_PRICE_ID")
    )
    stripe_premium_yearly_price_id: str | None = Field(
        default=None, validation_alias=_alias("STRIPE_PREMIUM_YEARLY_PRICE_ID")
    )
    # Document 002: a JSON object of plan code -> price id.
    stripe_price_ids: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, validation_alias=_alias("STRIPE_PRICE_IDS")
    )

    # --- billfold's own ---------------------------------------------------------------
    # Always absolute; see resolve_data_dir for where it is when BILLFOLD_DATA_DIR is unset.
    data_dir: Path = Field(
        default_factory=lambda: resolve_data_dir(), validation_alias=_alias("BILLFOLD_DATA_DIR")
    )
    database_url: str | None = Field(default=None, validation_alias=_alias("BILLFOLD_DATABASE_URL"))
    jwt_secret: str | None = Field(default=None, validation_alias=_alias("BILLFOLD_JWT_SECRET"))
    jwt_public_key: str | None = Field(
        default=None, validation_alias=_alias("BILLFOLD_JWT_PUBLIC_KEY")
    )
    jwt_private_key: str | None = Field(
        default=None, validation_alias=_alias("BILLFOLD_JWT_PRIVATE_KEY")
    )
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = Field(
        default="HS256", validation_alias=_alias("BILLFOLD_JWT_ALGORITHM")
    )
    jwt_issuer: str = Field(default="billfold", validation_alias=_alias("BILLFOLD_JWT_ISSUER"))
    jwt_audience: str = Field(default="billfold", validation_alias=_alias("BILLFOLD_JWT_AUDIENCE"))
    allowed_redirect_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_alias("BILLFOLD_ALLOWED_REDIRECT_HOSTS")
    )
    redis_url: str | None = Field(default=None, validation_alias=_alias("BILLFOLD_REDIS_URL"))
    # Prefix of every key billfold keeps in Redis (several deployments may share one server).
    redis_prefix: str = Field(default="billfold", validation_alias=_alias("BILLFOLD_REDIS_PREFIX"))
    # Per caller (billfold.api.ratelimit); the second is for routes that create Stripe objects.
    rate_limit: str = Field(default="120/minute", validation_alias=_alias("BILLFOLD_RATE_LIMIT"))
    rate_limit_checkout: str = Field(
        default="10/minute", validation_alias=_alias("BILLFOLD_RATE_LIMIT_CHECKOUT")
    )
    # Per client address, in front of the per-caller limits: every request, and (tighter) the
    # requests refused for bad credentials (401); Stripe's webhooks have their own.
    rate_limit_address: str = Field(
        default="600/minute", validation_alias=_alias("BILLFOLD_RATE_LIMIT_ADDRESS")
    )
    rate_limit_auth_failures: str = Field(
        default="20/minute", validation_alias=_alias("BILLFOLD_RATE_LIMIT_AUTH_FAILURES")
    )
    rate_limit_webhook: str = Field(
        default="1200/minute", validation_alias=_alias("BILLFOLD_RATE_LIMIT_WEBHOOK")
    )
    # Proxies (addresses or CIDRs, comma separated) whose X-Forwarded-For is believed; none by
    # default. The client is the right-most address of the chain that is not a trusted proxy.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_alias("BILLFOLD_TRUSTED_PROXIES")
    )
    host: str = Field(default="127.0.0.1", validation_alias=_alias("BILLFOLD_HOST"))
    port: int = Field(default=8000, validation_alias=_alias("BILLFOLD_PORT"))
    public_url: str | None = Field(default=None, validation_alias=_alias("BILLFOLD_PUBLIC_URL"))
    # Access stays through past_due for this many days (0 = none).
    past_due_grace_days: int = Field(
        default=3, validation_alias=_alias("BILLFOLD_PAST_DUE_GRACE_DAYS")
    )
    # Where the Stripe SDK sends requests instead of api.stripe.com (`billfold sandbox serve`).
    stripe_api_base_override: str | None = Field(
        default=None, validation_alias=_alias("BILLFOLD_STRIPE_API_BASE")
    )
    # The job runner (billfold.jobs): `billfold serve` runs a worker in-process unless this is
    # off (dedicated `billfold worker` processes on PostgreSQL).
    embedded_worker: Literal["on", "off"] = Field(
        default="on", validation_alias=_alias("BILLFOLD_EMBEDDED_WORKER")
    )
    worker_concurrency: int = Field(
        default=4, ge=1, le=256, validation_alias=_alias("BILLFOLD_WORKER_CONCURRENCY")
    )
    # How often an idle worker looks for due jobs (and writes recurring jobs' slots).
    jobs_poll_seconds: float = Field(
        default=1.0, gt=0, validation_alias=_alias("BILLFOLD_JOBS_POLL_SECONDS")
    )
    # A claimed job belongs to its worker this long, renewed while it runs; a worker that died
    # leaves its job to the others once the lease is over.
    jobs_lease_seconds: float = Field(
        default=60.0, gt=0, validation_alias=_alias("BILLFOLD_JOBS_LEASE_SECONDS")
    )
    # Done jobs are deleted this many days after they finished (dead ones are kept).
    jobs_keep_days: float = Field(
        default=7.0, gt=0, validation_alias=_alias("BILLFOLD_JOBS_KEEP_DAYS")
    )
    # Request bodies: the most a route reads (413 past it), Stripe's webhooks' own bound, and
    # how deeply a JSON body may nest (400 past it).
    max_body_bytes: int = Field(
        default=64 * 1024, gt=0, validation_alias=_alias("BILLFOLD_MAX_BODY_BYTES")
    )
    max_webhook_body_bytes: int = Field(
        default=1024 * 1024, gt=0, validation_alias=_alias("BILLFOLD_MAX_WEBHOOK_BODY_BYTES")
    )
    max_json_depth: int = Field(
        default=32, ge=2, le=512, validation_alias=_alias("BILLFOLD_MAX_JSON_DEPTH")
    )
    # Extra modules (plugins) that declare job kinds in a module-level `jobs` JobRegistry.
    job_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_alias("BILLFOLD_JOB_MODULES")
    )
    # Connections each process keeps open (readers and writers each, on SQLite); more requests
    # in flight than this wait for one, briefly opening up to twice as many extra ones.
    db_pool_size: int = Field(default=20, ge=1, validation_alias=_alias("BILLFOLD_DB_POOL_SIZE"))
    catalog_file: Path | None = Field(
        default=None, validation_alias=_alias("BILLFOLD_CATALOG_FILE")
    )
    environment: Literal["development", "production", "test"] = Field(
        default="development", validation_alias=_alias("BILLFOLD_ENV")
    )
    log_level: str = Field(default="INFO", validation_alias=_alias("BILLFOLD_LOG_LEVEL"))
    # Document 003's DynamoDB table: billfold keeps that data in its own database and says so.
    billing_table_name: str | None = Field(
        default=None, validation_alias=_alias("BILLING_TABLE_NAME")
    )
    # The billing panel at `/` (billfold.web): how long a panel session lasts, the origins
    # that may frame it (CSP frame-ancestors; none: framing refused), and whether the API
    # routes that ask for it require document 003's `X-SESSION-ID` (a panel session).
    panel_session_minutes: int = Field(
        default=120, ge=1, le=7 * 24 * 60, validation_alias=_alias("BILLFOLD_PANEL_SESSION_MINUTES")
    )
    panel_frame_ancestors: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_alias("BILLFOLD_PANEL_FRAME_ANCESTORS")
    )
    require_session_id: bool = Field(
        default=False, validation_alias=_alias("BILLFOLD_REQUIRE_SESSION_ID")
    )
    # Autopay (billfold.payments.jobs): how often the sweep settles the dues of the accounts
    # with autopay on, and the days waited after each failed run in a row (comma separated);
    # a failure after the last turns the account's autopay off.
    autopay_interval_seconds: int = Field(
        default=900,
        ge=1,
        le=7 * 24 * 3600,
        validation_alias=_alias("BILLFOLD_AUTOPAY_INTERVAL_SECONDS"),
    )
    autopay_retry_days: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 3.0, 5.0],
        validation_alias=_alias("BILLFOLD_AUTOPAY_RETRY_DAYS"),
    )
    # A payment whose process died between reserving it and recording Stripe's answer is
    # finished by the `payments.recover` job once it is this old.
    payments_recover_after_seconds: int = Field(
        default=600, ge=1, validation_alias=_alias("BILLFOLD_PAYMENTS_RECOVER_AFTER_SECONDS")
    )
    # A payment left waiting for the customer's 3-D Secure this long is canceled at Stripe by
    # the `payments.recover` job (Stripe cancels nothing by itself); its dues re-open.
    payments_action_timeout_seconds: int = Field(
        default=86_400, ge=60, validation_alias=_alias("BILLFOLD_PAYMENTS_ACTION_TIMEOUT_SECONDS")
    )

    @field_validator(
        "stripe_webhook_secret",
        "allowed_redirect_hosts",
        "job_modules",
        "trusted_proxies",
        "panel_frame_ancestors",
        "autopay_retry_days",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("autopay_retry_days", mode="after")
    @classmethod
    def _positive_retry_days(cls, value: list[float]) -> list[float]:
        if any(not 0 < days <= 365 for days in value):
            raise ValueError("each delay must be more than 0 and at most 365 days")
        return value

    @field_validator("stripe_price_ids", mode="before")
    @classmethod
    def _parse_price_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            allowed = 'a JSON object such as {"pro": "price_..."} or pro=price_...,team=price_...'
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                # Also accept "basic=price_1,pro=price_2".
                parts = [part.strip() for part in value.split(",") if part.strip()]
                if value.lstrip().startswith("{") or not all(
                    "=" in part and all(side.strip() for side in part.split("=", 1))
                    for part in parts
                ):
                    raise ValueError(f"must be {allowed}") from None
                return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in parts)}
            if not isinstance(parsed, dict) or not all(
                isinstance(v, str) and v for v in parsed.values()
            ):
                raise ValueError(f"must be {allowed}")
            return parsed
        return value

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("stripe_default_currency")
    @classmethod
    def _lower_currency(cls, value: str) -> str:
        return value.strip().lower()

    # --- derived ----------------------------------------------------------------------
    @property
    def sandbox_mode(self) -> bool:
        """No Stripe key outside production: billfold runs against its own Stripe sandbox. Never
        in production (its webhook secret is public, its test helpers pay any Checkout)."""
        return not self.stripe_secret_key and self.environment != "production"

    def mode_line(self) -> str:
        """The one start-up line saying which mode billfold is in and why."""
        if self.sandbox_mode:
            stripe_part = "Stripe sandbox (no STRIPE_SECRET_KEY)"
        elif self.stripe_secret_key and "_live_" in self.stripe_secret_key:
            stripe_part = "live Stripe (STRIPE_SECRET_KEY is a live key)"
        else:
            stripe_part = "Stripe test mode (STRIPE_SECRET_KEY is a test key)"
        if self.stripe_api_base_override:
            stripe_part += f" at {self.stripe_api_base_override} (BILLFOLD_STRIPE_API_BASE)"
        return f"billfold: {self.environment} mode, {stripe_part}"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'billfold.db').resolve()}"

    @property
    def base_url(self) -> str:
        """Where billfold itself is reached (for links and the sandbox's webhooks)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def server_url_file(self) -> Path:
        """Where `billfold serve` notes the address it listens on, for the CLI commands that
        call its embedded sandbox (`billfold stripe sync`, `reconcile`) from any directory."""
        return self.data_dir / "server-url"

    def use_recorded_server_url(self) -> None:
        """For a CLI command: take the address the server noted (after `billfold serve --port`)
        unless BILLFOLD_PUBLIC_URL, BILLFOLD_HOST or BILLFOLD_PORT say where it is."""
        if self.model_fields_set & {"public_url", "host", "port"}:
            return
        try:
            recorded = self.server_url_file.read_text().strip()
        except OSError:
            return
        if recorded.startswith(("http://", "https://")):
            self.public_url = recorded

    @property
    def stripe_api_key(self) -> str:
        return self.stripe_secret_key or SANDBOX_SECRET_KEY

    @property
    def stripe_api_base(self) -> str | None:
        """Base address for the Stripe SDK: BILLFOLD_STRIPE_API_BASE when set (a sandbox served on
        its own), else None for real Stripe, the mounted sandbox otherwise."""
        if self.stripe_api_base_override:
            return self.stripe_api_base_override.rstrip("/")
        return None if self.stripe_secret_key else self.base_url + SANDBOX_MOUNT_PATH

    @property
    def publishable_key(self) -> str:
        return self.stripe_publishable_key or SANDBOX_PUBLISHABLE_KEY

    @property
    def webhook_secrets(self) -> list[str]:
        if self.stripe_webhook_secret:
            return list(self.stripe_webhook_secret)
        return [SANDBOX_WEBHOOK_SECRET] if self.sandbox_mode else []

    @property
    def redirect_hosts(self) -> set[str]:
        hosts = {h.lower() for h in self.allowed_redirect_hosts}
        # BILLFOLD_PUBLIC_URL: billfold's own pages (the billing panel's Checkout returns there).
        for url in (
            self.frontend_url,
            self.stripe_success_url,
            self.stripe_cancel_url,
            self.public_url,
        ):
            if url:
                host = urlsplit(url).hostname
                if host:
                    hosts.add(host.lower())
        return hosts

    def check(self) -> None:
        """Refuse to start with a wrong or missing value, naming the variable."""
        if self.environment == "production" and not self.stripe_secret_key:
            raise ConfigurationError(
                "STRIPE_SECRET_KEY is required with BILLFOLD_ENV=production (a live or test "
                "Stripe key, sk_... or rk_...): production never runs the Stripe sandbox."
            )
        if self.stripe_secret_key and not self.stripe_secret_key.startswith(("sk_", "rk_")):
            raise ConfigurationError(
                "STRIPE_SECRET_KEY must be a Stripe secret key starting with sk_ or rk_."
            )
        if self.stripe_secret_key and not self.stripe_webhook_secret:
            raise ConfigurationError(
                "STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set "
                "(billfold never accepts unsigned webhooks)."
            )
        for secret in self.stripe_webhook_secret:
            if not secret.startswith("whsec_"):
                raise ConfigurationError("STRIPE_WEBHOOK_SECRET must start with whsec_.")
        if self.stripe_default_currency not in SUPPORTED_CURRENCIES:
            raise ConfigurationError(
                f"STRIPE_DEFAULT_CURRENCY is {self.stripe_default_currency!r}, not a currency "
                "Stripe supports: use a three-letter ISO code such as usd or eur."
            )
        if self.catalog_file is not None and not Path(self.catalog_file).is_file():
            raise ConfigurationError(
                f"BILLFOLD_CATALOG_FILE is {str(self.catalog_file)!r}, which is not a file "
                f"(relative paths start in {Path.cwd()}): name a TOML catalog or unset it."
            )
        if self.jwt_algorithm == "HS256":
            if self.environment == "production" and not self.jwt_secret:
                raise ConfigurationError(
                    "BILLFOLD_JWT_SECRET (32+ characters) or BILLFOLD_JWT_ALGORITHM=RS256/ES256 "
                    "with BILLFOLD_JWT_PUBLIC_KEY is required with BILLFOLD_ENV=production."
                )
            if self.jwt_secret is not None and len(self.jwt_secret) < 32:
                raise ConfigurationError("BILLFOLD_JWT_SECRET must be at least 32 characters long.")
        elif not self.jwt_public_key:
            raise ConfigurationError(
                "BILLFOLD_JWT_PUBLIC_KEY is required when BILLFOLD_JWT_ALGORITHM is "
                f"{self.jwt_algorithm}."
            )
        if self.database_url and not self.database_url.startswith(("sqlite", "postgres")):
            raise ConfigurationError(
                "BILLFOLD_DATABASE_URL must be a sqlite:// or postgresql:// URL."
            )
        for name, rate in (
            ("BILLFOLD_RATE_LIMIT", self.rate_limit),
            ("BILLFOLD_RATE_LIMIT_CHECKOUT", self.rate_limit_checkout),
            ("BILLFOLD_RATE_LIMIT_ADDRESS", self.rate_limit_address),
            ("BILLFOLD_RATE_LIMIT_AUTH_FAILURES", self.rate_limit_auth_failures),
            ("BILLFOLD_RATE_LIMIT_WEBHOOK", self.rate_limit_webhook),
        ):
            try:
                positive = parse_rate_limit(rate).amount > 0
            except ValueError:
                positive = False
            if not positive:
                raise ConfigurationError(
                    f"{name} must be a rate such as 120/minute or 10 per second, got {rate!r}."
                )
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigurationError(
                    "BILLFOLD_TRUSTED_PROXIES must list addresses or CIDRs (10.0.0.0/8, ::1), "
                    f"got {proxy!r}."
                ) from None
        if self.redis_url and urlsplit(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "BILLFOLD_REDIS_URL must be a redis://, rediss:// or unix:// URL."
            )
        for name, url in (("FRONTEND_URL", self.frontend_url),):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigurationError(f"{name} must be an http(s) URL, got {url!r}.")
        for origin in self.panel_frame_ancestors:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                not in (
                    "",
                    "/",
                )
            ):
                raise ConfigurationError(
                    "BILLFOLD_PANEL_FRAME_ANCESTORS must list origins such as "
                    f"https://app.example.com, got {origin!r}."
                )


DATA_DIR_NAME = ".billfold"


def resolve_data_dir(*, cwd: Path | None = None, prefix: Path | None = None) -> Path:
    """Where billfold keeps its SQLite database, the sandbox's state and the development JWT
    secret when BILLFOLD_DATA_DIR is unset. The server and every CLI command resolve it alike:
    1. the nearest `.billfold` directory in the current directory or one of its parents;
    2. else the `.billfold` beside the virtual environment billfold runs from (where
       ./scripts/serve keeps it), when that exists;
    3. else `./.billfold` in the current directory (created on first use)."""
    here = (cwd or Path.cwd()).absolute()
    for directory in (here, *here.parents):
        if (directory / DATA_DIR_NAME).is_dir():
            return directory / DATA_DIR_NAME
    venv = (prefix or Path(sys.prefix)).absolute()
    if venv != Path(sys.base_prefix).absolute() or prefix is not None:
        beside = venv.parent / DATA_DIR_NAME
        if beside.is_dir():
            return beside
    return here / DATA_DIR_NAME


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` / `sqlite://` URLs and pick billfold's async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def describe_validation_error(exc: ValidationError) -> str:
    """One sentence naming the variable, its value and what is allowed (first error only)."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error.get("loc") else "a setting"
    field = Settings.model_fields.get(name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        name = str(field.validation_alias.choices[0])
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    value = error.get("input")
    shown = f"{value!r}" if isinstance(value, str | int | float) else "the given value"
    if message.startswith("must "):
        return f"{name} is {shown}: it {message}."
    return f"{name} is {shown}, which is not allowed: {message}."


def load_settings() -> Settings:
    """Settings from the environment; ConfigurationError (one sentence) for a value of the
    wrong shape, never pydantic's report."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
