"""The published JSON Schema of control signals, for consumers and tests."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson

SCHEMA_PATH = Path(__file__).with_name("control-signal.schema.json")


@cache
def control_signal_schema() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(SCHEMA_PATH.read_bytes())
    return data


def validate_control_signal(signal: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `signal` breaks the v1 contract."""
    import jsonschema

    jsonschema.validate(signal, control_signal_schema(), format_checker=jsonschema.FormatChecker())
