"""Reading a retained payload the centre publishes (schedule, summary): size bound, JSON, then
a strict model; every refusal one line naming where and why, as the caller's error type."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validate_payload(model: type[M], obj: Any, error: type[Exception]) -> M:
    """``obj`` as ``model``; raises ``error`` naming the first problem and how many more."""
    if not isinstance(obj, dict):
        raise error(f"expected a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise error(f"{where}: {first['msg']}{more}") from None


def parse_payload(model: type[M], payload: bytes, max_bytes: int, error: type[Exception]) -> M:
    """``payload`` (at most ``max_bytes``, JSON) as ``model``; raises ``error``."""
    if len(payload) > max_bytes:
        raise error(f"{len(payload)} bytes; expected at most {max_bytes}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise error(f"not JSON: {exc}") from None
    return validate_payload(model, obj, error)
