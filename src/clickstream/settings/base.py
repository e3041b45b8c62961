"""What every settings section is."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "CLICKSTREAM_"
CONFIG_ENV = "CLICKSTREAM_CONFIG"
DEFAULT_CONFIG_FILE = "clickstream.toml"


class Section(BaseModel):
    """A table of the TOML file (``[kafka]``), a group of ``CLICKSTREAM_<SECTION>_*``."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def env_name(section: str | None, name: str) -> str:
    """The environment variable of a setting: ``env_name("kafka", "client_id")``."""
    parts = [section, name] if section else [name]
    return ENV_PREFIX + "_".join(parts).upper()
