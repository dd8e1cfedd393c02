"""Configuration: every knob and limit is a named, documented setting read from the environment.

The README's configuration table is generated from (and tested against) ``Settings.model_fields``,
so a setting added here without documentation fails the test suite.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(Exception):
    """The configuration cannot work (e.g. PostgreSQL without its driver): the CLI prints it as one line."""


SQLITE_CACHE_MB = 32  # the default of ``sqlite_cache_mb``, also for a ``Database`` opened without settings
EVENT_PARTITION_MONTHS_AHEAD = 3  # the default of ``event_partition_months_ahead``, also for migration 0008
MAX_ATTRIBUTE_KEYS = 1000  # the default of ``max_attribute_keys``, also for library calls without settings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENCUES_", extra="ignore")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        """Arguments, then the environment: the only sources opencues has. pydantic-settings
        would also walk every field for a `.env` file and a secrets directory that are never
        configured, which doubled the cost of making settings (~1.4 ms each; tests make them
        per test)."""
        return (init_settings, env_settings)

    data_dir: Path = Field(
        Path("./opencues-data"),
        description="Directory holding the SQLite database, stored uploads, exports and the signing secret.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; overrides the SQLite file in the data dir. `postgresql://…` selects PostgreSQL.",
    )
    public_url: str | None = Field(
        None,
        description="Base URL used in every `url` field (e.g. `https://cues.example.com`). Default: the request's own scheme and host.",
    )
    rate_limit: str | None = Field(
        None,
        description="Per-API-key request rate, e.g. `100/second` or `1000/minute`. Unset means unlimited.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL for the rate limiter's shared counters (needed when several server processes share a limit).",
    )
    smtp_url: str | None = Field(
        None,
        description="`smtp://user:pass@host:port` (STARTTLS when offered; `?starttls=false` disables it) or `smtps://…`. Unset: export emails are written as `.eml` files under the data dir.",
    )
    mail_from: str = Field("opencues@localhost", description="Sender address of export emails.")
    secret_key: str | None = Field(
        None,
        description="Secret for signing export download links. Unset: generated once and kept in `<data dir>/secret_key`.",
    )
    sqlite_cache_mb: int = Field(
        SQLITE_CACHE_MB,
        ge=1,
        description="SQLite page cache per database connection, in MiB (a server process holds a few; import and export jobs fill theirs).",
    )
    sqlite_import_cache_mb: int = Field(
        96,
        ge=1,
        description="SQLite page cache of the connection writing an events import batch, in MiB, for that batch only (its indexes' pages stay cached through the batch).",
    )
    max_body_bytes: int = Field(20 * 1024 * 1024, description="Largest plain request body (HTTP 413 above).")
    max_upload_bytes: int = Field(200 * 1024 * 1024, description="Largest uploaded file in a multipart request (HTTP 413 above).")
    history_default_limit: int = Field(100, description="Events returned by `GET users/{id}/events` without `limit`.")
    history_max_limit: int = Field(10_000, description="Largest accepted `limit` for a user's event history.")
    job_workers: int = Field(1, description="Job worker threads that `opencues serve` runs in each server process (0: none; run `opencues worker` instead).")
    job_lease_seconds: int = Field(60, description="How long a worker's claim on a job lasts without renewal before another worker may take it over.")
    job_poll_seconds: float = Field(0.5, description="How often an idle worker looks for new jobs (a job accepted by the worker's own server process starts at once).")
    job_max_attempts: int = Field(5, description="Attempts (claims) after which a job that keeps crashing its worker or raising errors is marked FAILED.")
    job_progress_seconds: float = Field(5.0, description="Least time between two `Progress` events of a running job.")
    import_batch_rows: int = Field(50_000, description="Rows written per transaction by import jobs; progress is committed with each batch.")
    import_write_connections: int = Field(
        2,
        ge=1,
        le=8,
        description="PostgreSQL: connections an events import writes over at once, a batch each, committed in order (1: one batch at a time).",
    )
    job_error_samples: int = Field(100, description="Row errors kept in a job's `Completed` event.")
    idempotency_ttl_hours: int = Field(48, description="How long an `Idempotency-Key` is remembered.")
    export_link_ttl_days: int = Field(7, description="Lifetime of signed export download links.")
    export_max_rows: int = Field(10_000_000, description="Ceiling of an export's `limit`.")
    export_helpers: int = Field(
        2,
        ge=0,
        description="Helpers that render a large export's time windows in parallel: processes on SQLite, database connections on PostgreSQL (0: the job worker renders it alone).",
    )
    ingestion_rules_cache_seconds: float = Field(
        1.0,
        ge=0,
        description="How long a server process keeps an account's ingestion filtering rules: a change applies at once in the process that saved it, within this many seconds in the others.",
    )
    max_url_bytes: int = Field(8192, ge=256, description="Longest request URL (path and query string), in bytes (HTTP 414 above).")
    max_header_bytes: int = Field(65536, ge=1024, description="Largest request head (request line and headers together), in bytes (HTTP 431 above; checked per socket read, so up to one read (≤ 256 KiB) more may be buffered first).")
    max_header_count: int = Field(100, ge=10, description="Most headers in one request (HTTP 431 above).")
    redis_timeout_seconds: float = Field(0.5, gt=0, description="Longest wait for Redis (connecting, or any one command) before the rate limiter counts in memory instead.")
    redis_retry_seconds: float = Field(5.0, gt=0, description="How often the rate limiter, counting in memory while Redis is unreachable, checks whether it is back.")
    admin_token: str | None = Field(
        None,
        description="Bearer token of the control API under `/-/` (accounts, resets, snapshots, faults, job modes, the request journal, the outbox). Unset: the control API is off (404); `opencues serve --test` sets one.",
    )
    journal: Literal["on", "off"] = Field(
        "off",
        description="`on`: record API requests in the request journal (`GET /-/requests`); always on under `opencues serve --test`.",
    )
    journal_max_requests: int = Field(10_000, ge=1, description="Requests the journal keeps (the oldest are dropped).")
    analytics_rate_limit: str = Field(
        "60/second",
        validate_default=False,  # a set value is checked (``_rate_limit_parses``), the default needs no ``limits``
        description="Per-account request rate of the `analytics/*` routes (their `X-RateLimit-*` headers), e.g. `60/second`.",
    )
    analytics_export_concurrency: int = Field(
        2, ge=1, description="Analytics export jobs an account may have queued or running at once (429 beyond)."
    )
    max_attribute_keys: int = Field(
        MAX_ATTRIBUTE_KEYS,
        ge=1,
        description="Most object keys in one event's attributes or one profile update, counted at every depth (HTTP 400 above; a failed row in imports).",
    )
    file_store: str | None = Field(
        None,
        description="Where uploads and export files live: `s3://bucket/prefix` for an S3-compatible object store (credentials from the standard `AWS_*` variables; needs the `s3` extra). Unset: `<data dir>/files`.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of a non-AWS S3-compatible store (MinIO, Ceph, …), e.g. `http://minio:9000`. Unset: AWS.",
    )
    s3_part_mb: int = Field(
        8,
        ge=5,
        description="Part size of multipart uploads to the object store, in MiB (S3's minimum is 5); a write holds at most two parts in memory.",
    )
    s3_presigned_links: bool = Field(
        False,
        description="With an `s3://` file store, export download links are presigned object-store URLs (at most 7 days) instead of this server's `/downloads/` links.",
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics at `/metrics` (no auth; `off` removes the route).")
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="Port on which `opencues worker` serves its Prometheus metrics at `/metrics` (unset: none).",
    )  # fmt: skip
    log_format: Literal["text", "json"] = Field("text", description="Log lines as `text` or as JSON objects, one a line (`json`).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = Field(
        "INFO", description="Least severity logged: `DEBUG`, `INFO` (one access-log line a request), `WARNING` or `ERROR`."
    )
    studio_session_hours: int = Field(
        12, ge=1, description="How long a Studio sign-in (`/studio`) lasts before the browser must sign in again.",
    )  # fmt: skip
    shutdown_grace_seconds: float = Field(
        30.0, ge=0,
        description="On SIGTERM, how long a server waits for in-flight requests to finish before closing them (its job workers stop at their next batch and release their jobs).",
    )  # fmt: skip

    event_partition_months_ahead: int = Field(
        EVENT_PARTITION_MONTHS_AHEAD, ge=1, le=120,
        description="PostgreSQL: month partitions of the events table that workers keep ready ahead of the current month (events outside every partition go to a default partition).",
    )  # fmt: skip
    event_retention_days: int | None = Field(
        None, ge=1,
        description="Keep events this many days, then workers remove them (hourly): on PostgreSQL by dropping whole month partitions past the period (so up to a month longer), on SQLite by deleting in batches. Unset: events are kept forever.",
    )  # fmt: skip

    @field_validator("rate_limit", "analytics_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value:
            from limits import parse

            try:
                parse(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a rate such as `100/second` or `1000/minute`") from None
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the plain libpq form and pick psycopg 3 as the driver.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'opencues.db').resolve()}"


def load_settings(**overrides) -> Settings:
    """Read settings from the environment, with explicit overrides (CLI flags, tests) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
