"""One settings class for the whole application (environment prefix ``EMPORIUM_``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "testing", "production"]

DEV_ADMIN_TOKEN = "dev-admin-token"
DEV_SELLER_TOKEN = "dev-seller-token"


def _env_file() -> str:
    return ".env.testing" if os.environ.get("EMPORIUM_ENV") == "testing" else ".env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EMPORIUM_",
        env_file=_env_file(),
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,  # settings carry secrets; errors reach the logs
    )

    env: Environment = "development"
    data_dir: Path = Path("./var")
    # Unset means: start (or join) an embedded server under data_dir.
    database_url: str | None = None
    valkey_url: str | None = None
    # Per server process. Connections beyond the pool are opened and closed per use,
    # which under steady load costs more than the work itself, so the pool is sized for
    # the load and the overflow only absorbs bursts. At least two: the outbox dispatcher
    # holds one for its batch while the search indexer reads stock on another. Small on
    # purpose: a request takes its connection before its database work, so the pool also
    # holds new requests back while those under way finish (in a sell-out, the refusals
    # behind the winners' payments), and more backends than cores add no throughput.
    db_pool_size: int = Field(default=8, ge=2)
    # Per server process, for checkout alone (a bulkhead): a rush on add to cart, whose
    # requests queue for one product's stock rows in a sell-out, cannot take every
    # connection from the buyers who are paying.
    db_checkout_pool_size: int = Field(default=12, ge=1)
    # A ping costs three round trips per checkout from the pool; without it a connection
    # the server dropped fails one request (503) and is replaced.
    db_pool_pre_ping: bool = False
    # Each new pooled connection runs the hot statements once, rolled back, before it
    # serves (emporium.checkout.warmup): 30-60 ms at start per connection, instead of
    # the first buyers' requests paying for a cold backend.
    db_warm_up: bool = True
    # Per server process: statements placing orders, and statements marking them paid,
    # under way at once. A checkout arriving while they all are waits and rides the next
    # one with the others that came meanwhile (up to 32): fewer commits and busy backends.
    # One of each carried 10 % more spread orders a second than two.
    checkout_place_calls: int = Field(default=1, ge=1)
    checkout_pay_calls: int = Field(default=1, ge=1)

    # Request bodies larger than this answer 413 before they are read whole.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    host: str = "127.0.0.1"
    port: int = 8000

    admin_token: str = DEV_ADMIN_TOKEN
    seller_token: str = DEV_SELLER_TOKEN
    demo_products: int = Field(default=5000, ge=0)

    product_cache_ttl_seconds: int = Field(default=60, ge=0)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    # How long a woken outbox dispatcher waits to gather more events into its batch.
    outbox_linger_seconds: float = Field(default=0.05, ge=0, le=5)
    # How long delivered outbox events are kept (for replay) before a job deletes them.
    outbox_retention_hours: float = Field(default=168.0, gt=0)
    # How long a server process keeps a caller's user row it has read (0: not at all);
    # a token or user removed in the database works that long in each process.
    user_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # How long an untouched cart keeps its stock reservations.
    reservation_ttl_seconds: int = Field(default=1800, ge=1)
    search_breaker_fail_max: int = Field(default=3, ge=1)
    search_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    # Unset means the simulated gateway runs in-process; else its HTTP service at this URL.
    payment_gateway_url: str | None = None
    payment_timeout_seconds: float = Field(default=30.0, gt=0)
    payment_breaker_error_threshold: float = Field(default=0.3, gt=0, le=1)
    payment_breaker_reset_seconds: float = Field(default=60.0, gt=0)
    payment_breaker_volume: int = Field(default=3, ge=1)
    log_level: str = "INFO"
    log_json: bool = True

    # Login sessions live in Valkey. Cookies are Secure (sent over HTTPS only) in
    # production unless set otherwise, and not by default elsewhere (plain-HTTP dev).
    session_ttl_seconds: int = Field(default=86400, ge=60)
    cookie_secure: bool = False
    # Login attempts (accounts/throttle.py) allowed within the window that starts at the
    # first of them: failures for one email from one address, and from anywhere; attempts
    # from one address.
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_account: int = Field(default=50, ge=1)
    login_max_attempts_per_ip: int = Field(default=100, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    # Accounts created from one client address within the window.
    registration_max_per_ip: int = Field(default=20, ge=1)
    registration_window_seconds: int = Field(default=3600, ge=1)
    # Keys the fingerprints of checkout bodies (they carry card numbers), so that the
    # stored fingerprint cannot be reversed by trying card numbers. Unset: generated
    # into data_dir (kit/secrets.py), which only processes sharing that directory share.
    secret_key: SecretStr | None = None

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("EMPORIUM_SECRET_KEY must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Settings:
        if self.env == "production":
            for name in ("admin_token", "seller_token"):
                if getattr(self, name) in (DEV_ADMIN_TOKEN, DEV_SELLER_TOKEN):
                    raise ValueError(f"EMPORIUM_{name.upper()} must be changed in production")
            if self.secret_key is None:
                raise ValueError(
                    "EMPORIUM_SECRET_KEY must be set in production, the same for every server"
                )
            if "cookie_secure" not in self.model_fields_set:
                self.cookie_secure = True
        return self

    @property
    def index_dir(self) -> Path:
        return self.data_dir.resolve() / "index"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir.resolve() / "pg"

    @property
    def valkey_dir(self) -> Path:
        return self.data_dir.resolve() / "valkey"


@lru_cache
def get_settings() -> Settings:
    return Settings()
