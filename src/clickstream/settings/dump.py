"""The settings in effect as TOML (``clickstream config``): secrets and write keys masked, unset
settings as comments, so that the text saved to a file reads back as the same settings."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from clickstream.settings.model import Settings

MASK = "**********"
"""What a secret is printed as (pydantic's own rendering of a ``SecretStr``)."""
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def settings_toml(settings: Settings) -> str:
    """``settings`` as a TOML document: top-level keys first, then one table per section."""
    data: dict[str, Any] = settings.model_dump(mode="json")  # SecretStr: "**********"
    collector = data.get("collector", {})
    collector["write_keys"] = {site: MASK for site in collector.get("write_keys", {})}
    lines = [_toml_line(key, value) for key, value in data.items() if not isinstance(value, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]", *(_toml_line(k, v) for k, v in values.items())]
    return "\n".join(lines) + "\n"


def _toml_line(key: str, value: Any) -> str:
    """``key = value``; an unset (None) setting as a comment, which reads back as unset."""
    if value is None:
        return f"# {_toml_key(key)} = (unset)"
    return f"{_toml_key(key)} = {_toml(value)}"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_key(str(k))} = {_toml(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also escapes DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
