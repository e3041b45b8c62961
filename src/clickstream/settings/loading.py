"""Reading the settings: the TOML file, then ``CLICKSTREAM_*`` environment variables; one line
naming the bad setting when something is invalid."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from clickstream.errors import ConfigError
from clickstream.settings.base import CONFIG_ENV, DEFAULT_CONFIG_FILE, ENV_PREFIX, env_name
from clickstream.settings.model import SECTIONS, Settings


def all_env_names() -> dict[str, tuple[str | None, str]]:
    """Every accepted environment variable, mapped to its (section, name)."""
    names: dict[str, tuple[str | None, str]] = {}
    for name in Settings.model_fields:
        if name in SECTIONS:
            for sub in SECTIONS[name].model_fields:
                names[env_name(name, sub)] = (name, sub)
        else:
            names[env_name(None, name)] = (None, name)
    return names


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the TOML file and the environment; raise :class:`ConfigError` on anything invalid."""
    environ = os.environ if environ is None else environ
    path = _config_path(config_file, environ)
    data: dict[str, Any] = _read_toml(path) if path else {}
    known = all_env_names()
    from_env: dict[str, str] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        if var not in known:
            hint = difflib.get_close_matches(var, known, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(f"unknown setting {var}{suggestion}")
        section, name = known[var]
        target = data.setdefault(section, {}) if section else data
        if not isinstance(target, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        target[name] = value if value != "" else None
        from_env[".".join(p for p in (section, name) if p)] = var
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, from_env, path)) from None


def _config_path(config_file: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    explicit = environ.get(CONFIG_ENV) or config_file
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _describe(exc: ValidationError, from_env: dict[str, str], path: Path | None) -> str:
    """One line naming the first bad setting, where it came from, and why."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    reason = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        where = f" in {path}" if path else ""
        return f"unknown setting {dotted}{where}"
    if dotted in from_env:
        name = f"{from_env[dotted]}={error['input']!r}"
    elif path is not None and loc:
        name = f"{dotted} in {path}"
    else:
        name = dotted or "settings"
    return f"invalid setting {name}: {reason}"
