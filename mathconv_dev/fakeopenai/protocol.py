"""Enough of OpenAI's request checks and response formats to give realistic answers:
OpenAI-shaped errors, strict json_schema checks, token counts, reset durations."""

from __future__ import annotations

import math
import re
from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, dict[str, Any]] = {
            "error": {"message": message, "type": type_, "param": param, "code": code}
        }
        self.headers = headers or {}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def check_strict_schema(schema: object, path: str, name: str) -> None:
    if not isinstance(schema, dict):
        raise bad_request(f"Invalid schema for response_format '{name}': {path} is not an object.")
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            raise bad_request(
                f"Invalid schema for response_format '{name}': In context={path}, "
                "'additionalProperties' is required to be supplied and to be false.",
                "response_format",
                "invalid_json_schema",
            )
        missing = sorted(set(properties) - set(schema.get("required", [])))
        if missing:
            raise bad_request(
                f"Invalid schema for response_format '{name}': In context={path}, 'required' "
                f"is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'.",
                "response_format",
                "invalid_json_schema",
            )
        for key, sub in properties.items():
            check_strict_schema(sub, f"{path}.properties.{key}", name)
    if schema.get("type") == "array" and "items" in schema:
        check_strict_schema(schema["items"], f"{path}.items", name)


def response_schema(request: dict) -> dict | None:
    response_format = request.get("response_format")
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise bad_request(
            "Invalid 'response_format': expected an object with a type.", "response_format"
        )
    if response_format["type"] == "json_object" or response_format["type"] == "text":
        return None
    if response_format["type"] != "json_schema":
        raise bad_request(
            f"Invalid value: '{response_format['type']}'. Supported values are: 'json_object', "
            "'json_schema', and 'text'.",
            "response_format.type",
            "invalid_value",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not spec.get("name"):
        raise bad_request(
            "Missing required parameter: 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
            "missing_required_parameter",
        )
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", spec["name"]):
        raise bad_request(
            "Invalid 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
            "invalid_value",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise bad_request(
            "Missing required parameter: 'response_format.json_schema.schema'.",
            "response_format.json_schema.schema",
            "missing_required_parameter",
        )
    if spec.get("strict"):
        check_strict_schema(schema, "()", spec["name"])
    return schema


def message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def count_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def duration(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s"


DIRECTIVE = re.compile(r"fake:(status=(\d{3})|hang|wrong|drop|garbage)(?:\*(\d+))?")
