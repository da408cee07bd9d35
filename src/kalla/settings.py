"""One settings object. Environment names follow the seed documents."""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kalla.errors import ConfigError

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"16G"``, ``"512MiB"``, ``"2 GB"`` or plain bytes → bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 16G, 512M or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def format_size(n: int) -> str:
    """Bytes as people read them: ``512 MiB``, ``2.5 GiB``, ``300 bytes``."""
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


# Parquet codecs DataFusion writes, with the level range each takes (checked at start-up,
# not at the first write).
_CODEC = re.compile(r"(uncompressed|snappy|lz4|lz4_raw)|(gzip|brotli|zstd)\((\d+)\)")
_LEVELS = {"gzip": range(0, 10), "brotli": range(0, 12), "zstd": range(1, 23)}


def parquet_codec(text: str) -> tuple[str, int | None]:
    """A checked ``KALLA_PARQUET_COMPRESSION`` value as pyarrow's ``(compression,
    compression_level)``: ``"zstd(3)"`` → ``("zstd", 3)``."""
    codec, _, level = text.partition("(")
    codec = {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)
    return codec, int(level.rstrip(")")) if level else None


def _default_memory_limit() -> int:
    """Half of physical memory: leaves room for Python, Arrow buffers outside the pool, the OS."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 1024**3
    return int(total * 0.5)


class Settings(BaseSettings):
    """Every knob Kalla reads from the environment, in one place."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    staging_path: Path = Field(default=Path("./staging"), alias="STAGING_PATH")
    memory_limit: int = Field(default_factory=_default_memory_limit, alias="KALLA_MEMORY_LIMIT")
    spill_path: Path | None = Field(default=None, alias="KALLA_SPILL_PATH")
    target_partitions: int = Field(default=0, alias="KALLA_TARGET_PARTITIONS")
    parquet_compression: str = Field(default="zstd(1)", alias="KALLA_PARQUET_COMPRESSION")
    join_strategy: Literal["auto", "hash", "sort_merge"] = Field(
        default="auto", alias="KALLA_JOIN_STRATEGY"
    )
    engine: Literal["datafusion"] = Field(default="datafusion", alias="KALLA_ENGINE")
    content_digests: bool = Field(default=True, alias="KALLA_CONTENT_DIGESTS")
    explain_breaks: bool = Field(default=True, alias="KALLA_EXPLAIN_BREAKS")
    log_format: Literal["text", "json"] = Field(default="text", alias="KALLA_LOG_FORMAT")
    # file sources (README "Files as they come"): refused beyond these, by name, at once
    max_columns: int = Field(default=1000, ge=1, alias="KALLA_MAX_COLUMNS")
    max_field_size: int = Field(default=64 * 1024**2, ge=1024, alias="KALLA_MAX_FIELD_SIZE")
    # recipe SQL: refused before it is parsed (sqlglot and DataFusion recurse per level)
    # candidate pairs one pass may produce; 0: 10 × (left rows + right rows), at least 1M
    max_candidates: int = Field(default=0, ge=0, alias="KALLA_MAX_CANDIDATES")
    max_sql_length: int = Field(default=100_000, ge=100, alias="KALLA_MAX_SQL_LENGTH")
    max_sql_depth: int = Field(default=64, ge=4, le=1000, alias="KALLA_MAX_SQL_DEPTH")

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    worker_url: str | None = Field(default=None, alias="WORKER_URL")
    nats_url: str | None = Field(default=None, alias="NATS_URL")
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    anthropic_api_key: str | None = Field(default=None, alias="ANTHROPIC_API_KEY")

    # recipe builder (docs/agent.md)
    anthropic_base_url: str | None = Field(default=None, alias="ANTHROPIC_BASE_URL")
    agent_model: str = Field(default="claude-sonnet-4-6", min_length=1, alias="KALLA_AGENT_MODEL")
    agent_share_rows: bool = Field(default=True, alias="KALLA_AGENT_SHARE_ROWS")
    agent_max_turns: int = Field(default=40, ge=1, alias="KALLA_AGENT_MAX_TURNS")
    agent_max_tokens: int = Field(default=600_000, ge=1000, alias="KALLA_AGENT_MAX_TOKENS")
    agent_max_retries: int = Field(default=4, ge=0, le=10, alias="KALLA_AGENT_MAX_RETRIES")
    agent_preview_rows: int = Field(default=2_000_000, ge=1, alias="KALLA_AGENT_PREVIEW_ROWS")

    # worker (docs/worker.md)
    worker_host: str = Field(default="127.0.0.1", alias="KALLA_WORKER_HOST")
    worker_port: int = Field(default=50050, ge=0, le=65535, alias="KALLA_WORKER_PORT")
    output_root: Path = Field(default=Path("./runs"), alias="KALLA_OUTPUT_ROOT")
    worker_concurrency: int = Field(default=1, ge=1, alias="KALLA_WORKER_CONCURRENCY")
    worker_queue_size: int = Field(default=64, ge=0, alias="KALLA_WORKER_QUEUE_SIZE")
    worker_shutdown_grace: float = Field(default=20.0, ge=0, alias="KALLA_WORKER_SHUTDOWN_GRACE")
    # each job's process: memory capped by the OS at KALLA_MEMORY_LIMIT + this (docs/worker.md)
    job_memory_headroom: int = Field(default=2 * 1024**3, ge=0, alias="KALLA_JOB_MEMORY_HEADROOM")
    job_timeout: float = Field(default=0.0, ge=0, alias="KALLA_JOB_TIMEOUT")  # seconds; 0: none
    callback_secret: SecretStr | None = Field(default=None, alias="KALLA_CALLBACK_SECRET")
    callback_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("localhost", "127.0.0.0/8", "::1"), alias="KALLA_CALLBACK_ALLOWED_HOSTS"
    )
    source_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(), alias="KALLA_SOURCE_ROOTS"
    )  # local files jobs may read, besides STAGING_PATH and KALLA_OUTPUT_ROOT
    callback_retry_seconds: float = Field(default=60.0, ge=0, alias="KALLA_CALLBACK_RETRY_SECONDS")
    callback_timeout: float = Field(default=10.0, gt=0, alias="KALLA_CALLBACK_TIMEOUT")
    # auto: one URL (seed 002) unless it ends in /api/worker; per_event: {url}/progress, …
    callback_style: Literal["auto", "single", "per_event"] = Field(
        default="auto", alias="KALLA_CALLBACK_STYLE"
    )

    # app (docs/app.md)
    app_host: str = Field(default="127.0.0.1", alias="KALLA_HOST")
    app_port: int = Field(default=3000, ge=0, le=65535, alias="KALLA_PORT")
    app_url: str | None = Field(default=None, alias="KALLA_APP_URL")
    api_token: SecretStr | None = Field(default=None, alias="KALLA_API_TOKEN")
    max_upload_size: int = Field(default=1024**3, gt=0, alias="KALLA_MAX_UPLOAD_SIZE")
    callback_max_age: float = Field(default=300.0, gt=0, alias="KALLA_CALLBACK_MAX_AGE")
    poll_interval: float = Field(default=15.0, gt=0, alias="KALLA_POLL_INTERVAL")

    @field_validator(
        "memory_limit", "max_upload_size", "job_memory_headroom", "max_field_size", mode="before"
    )
    @classmethod
    def _parse_size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("parquet_compression")
    @classmethod
    def _check_codec(cls, value: str) -> str:
        match = _CODEC.fullmatch(value.strip().lower())
        if match is None or (match.group(2) and int(match.group(3)) not in _LEVELS[match.group(2)]):
            raise ValueError(
                f"not a Parquet codec: {value!r} (use uncompressed, snappy, lz4, lz4_raw, "
                "gzip(0-9), brotli(0-11) or zstd(1-22))"
            )
        return match.group(0)

    @field_validator("source_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(p.strip()) for p in value.split(",") if p.strip())
        return value

    @field_validator("callback_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):  # "a.example.com, *.svc.cluster.local, 10.0.0.0/8"
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value


def is_loopback(host: str) -> bool:
    """Whether a bind address only listens on this machine (the safe default)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once; a bad value fails here, naming the variable (never its
    value, which may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        from kalla.recipe.parse import describe_validation_error

        problems = describe_validation_error(exc)
        raise ConfigError("invalid setting in the environment", problems=problems) from None
