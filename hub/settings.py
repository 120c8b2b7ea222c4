"""Hub settings, from ``FOYER_*`` environment variables or the command line.

Got through :func:`get_settings` so tests can pass their own; nothing is read
at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.protocol import check_id

__all__ = ["Settings", "default_data_dir", "get_settings"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "foyer"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOYER_", extra="ignore")

    hub_id: str | None = Field(
        default=None, description="This home's id on the network; generated once if unset."
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    db_path: Path | None = Field(default=None, description="SQLite file; <data_dir>/hub.db if unset.")
    db_sync: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="NORMAL survives a killed process; FULL also survives a power cut (slower).",
    )
    broker_url: str | None = Field(
        default=None, description="mqtt://user:pass@host:port or mqtts://…; embedded broker if unset."
    )
    broker_ca: str | None = None
    broker_cert: str | None = None
    broker_key: str | None = None
    embedded_broker_port: int = 1883
    api_host: str = "127.0.0.1"
    api_port: int = 8765
    retry_first_ms: int = Field(default=2000, ge=100)
    auto_opt_in: list[str] = Field(default_factory=list)
    idle_close_minutes: float = Field(default=30, gt=0, description="A quiet conversation ends after this.")

    @field_validator("hub_id")
    @classmethod
    def _valid_hub_id(cls, value: str | None) -> str | None:
        return None if value is None else check_id("hub", value)

    @property
    def database(self) -> Path:
        return self.db_path or self.data_dir / "hub.db"

    @property
    def keys_path(self) -> Path:
        """The hub's signing and sealing keys (created 0600 on first start), beside its database."""
        return self.database.with_name(self.database.stem + ".keys.json")


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
