"""One settings object. Environment names follow the seed documents."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"16G"``, ``"512MiB"``, ``"2 GB"`` or plain bytes → bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 16G, 512M or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


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

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    worker_url: str | None = Field(default=None, alias="WORKER_URL")
    nats_url: str | None = Field(default=None, alias="NATS_URL")
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    anthropic_api_key: str | None = Field(default=None, alias="ANTHROPIC_API_KEY")

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _parse_size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
