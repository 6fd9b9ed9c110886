"""Strict pydantic configs shared by every family: unknown fields are errors, and a bad value becomes one
:class:`ConfigError` whose message has a line per bad field naming it and what is allowed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from reasonlens.utils.errors import UserInputError


class ConfigError(UserInputError):
    """A config field has a value the model cannot use. The message names the field(s)."""


def format_validation_error(cls_name: str, err: ValidationError, allowed: list[str]) -> str:
    """One line per bad field: ``  field: problem (got value)``; unknown fields list the allowed ones."""
    lines = []
    for item in err.errors():
        msg = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a check across fields: its message names them
            lines.append(f"  {msg}")
            continue
        if item["type"] == "extra_forbidden":
            msg = f"unknown field; allowed fields: {', '.join(allowed)}"
        elif "input" in item and item["type"] != "missing" and str(item["input"]) not in msg:
            msg = f"{msg} (got {item['input']!r})"
        lines.append(f"  {'.'.join(str(p) for p in item['loc'])}: {msg}")
    return f"invalid {cls_name} config:\n" + "\n".join(lines)


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | BaseModel) -> StrictConfig:
        """Build and validate; raise :class:`ConfigError` with one line per bad field."""
        if isinstance(data, cls):
            return data.model_copy()
        if isinstance(data, BaseModel):
            data = data.model_dump()
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} needs a dict of fields, got {type(data).__name__}")
        try:
            return cls(**data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(cls.__name__, err, list(cls.model_fields))) from None
