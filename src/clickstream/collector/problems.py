"""Errors the collector answers with: a status, a message that says what is wrong, the field."""

from __future__ import annotations

import re
from typing import Any

import msgspec

_AT = re.compile(r" - at (`key` in )?`\$(?:\[\d+\])?\.?([^`]*)`$")
_ITEM = re.compile(r"\[(?:\d+|\.\.\.)\]")
_MISSING = re.compile(r"missing required field `([^`]+)`")


class Problem(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        rejected: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.rejected = rejected

    def body(self) -> bytes:
        """The JSON answer: ``{"error": ..., "field": ..., "rejected": [...]}``."""
        body: dict[str, Any] = {"error": self.message}
        if self.field:
            body["field"] = self.field
        if self.rejected is not None:
            body["rejected"] = self.rejected
        return msgspec.json.encode(body)


def validation_problem(exc: msgspec.MsgspecError | RecursionError) -> Problem:
    """400 for JSON that does not parse, 422 naming the field for one that does not fit."""
    if isinstance(exc, RecursionError):
        return Problem(400, "body is not accepted: JSON nested too deeply")
    text = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return Problem(400, f"body is not valid JSON: {text}")
    field = None
    at = _AT.search(text)
    if at:
        path = at.group(2)
        field = _ITEM.sub("", path) or None
        text = text[: at.start()]
        if at.group(1):
            text = f"{field}: a name: {text}"
        elif path != field:
            text = f"{field}: a value: {text}"
    missing = _MISSING.search(text)
    if missing:
        field = missing.group(1)
    if field and field not in text:
        text = f"{field}: {text}"
    return Problem(422, text, field)
