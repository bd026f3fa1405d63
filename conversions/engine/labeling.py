"""Labeling as an engine task: a label schema in, checked labels out. No Django imports.

A label schema is plain data here (LabelSpec): the Django side turns a LabelSchema row
into one. Its fields become the strict JSON schema of the structured-output request, and
every answer is checked against the same fields: a value outside the allowed list or
range is an InvalidOutput, so it can never be stored as a label.

Field types (LabelSchema.fields):
  choice    one value from "choices"
  integer   a whole number from "min" to "max"
  keywords  a list of at most "max_items" short strings (free keywords)
  text      one short free string
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from conversions.engine.prompts import block
from conversions.engine.retry import InvalidInput, InvalidOutput
from conversions.engine.types import WorkItem

FIELD_TYPES = ("choice", "integer", "keywords", "text")
DEFAULT_MAX_KEYWORDS = 5
MAX_KEYWORD_CHARS = 60
MAX_TEXT_CHARS = 500
# What the question may contribute to a prompt; a longer document is cut, not refused.
MAX_PROMPT_CHARS = 8000
LABEL_PROMPT_VERSION = "label-v1"
QUESTION_BLOCK = "QUESTION"
# Labels are short; this caps what a runaway answer can cost.
MAX_OUTPUT_TOKENS = 400


class InvalidLabels(ValueError):
    """An answer that does not fit the schema; the message says which field and why."""


@dataclass(frozen=True)
class LabelSpec:
    name: str
    version: int
    instructions: str
    fields: tuple[dict, ...]

    @property
    def field_names(self) -> list[str]:
        return [field["name"] for field in self.fields]


def field_json_schema(field: dict) -> dict:
    kind = field["type"]
    schema: dict[str, object]
    if kind == "choice":
        schema = {"type": "string", "enum": list(field["choices"])}
    elif kind == "integer":
        schema = {"type": "integer", "minimum": field["min"], "maximum": field["max"]}
    elif kind == "keywords":
        max_items = field.get("max_items") or DEFAULT_MAX_KEYWORDS
        schema = {"type": "array", "items": {"type": "string"}, "maxItems": max_items}
    elif kind == "text":
        schema = {"type": "string"}
    else:
        raise ValueError(f"unknown field type {kind!r}")
    if field.get("description"):
        schema["description"] = field["description"]
    return schema


def json_schema(spec: LabelSpec) -> dict:
    """The strict JSON schema of one answer: every field required, nothing else allowed."""
    return {
        "type": "object",
        "properties": {field["name"]: field_json_schema(field) for field in spec.fields},
        "required": spec.field_names,
        "additionalProperties": False,
    }


def response_format(spec: LabelSpec) -> dict:
    # OpenAI allows [a-zA-Z0-9_-]{1,64} as the schema name.
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", f"labels_{spec.name}")[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": json_schema(spec), "strict": True},
    }


def check_value(field: dict, value: object) -> object:
    """The value, normalised, if the field allows it; InvalidLabels otherwise."""
    name, kind = field["name"], field["type"]
    if kind == "choice":
        if not isinstance(value, str) or value not in field["choices"]:
            raise InvalidLabels(f"{name}: {value!r} is not one of the allowed values")
        return value
    if kind == "integer":
        # bool is an int in Python, and 3.0 is not an integer answer.
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidLabels(f"{name}: {value!r} is not a whole number")
        if not field["min"] <= value <= field["max"]:
            raise InvalidLabels(f"{name}: {value} is outside {field['min']}-{field['max']}")
        return value
    if kind == "keywords":
        max_items = field.get("max_items") or DEFAULT_MAX_KEYWORDS
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidLabels(f"{name}: expected a list of strings")
        if len(value) > max_items:
            raise InvalidLabels(f"{name}: {len(value)} keywords, at most {max_items} allowed")
        keywords = list(dict.fromkeys(v.strip() for v in value if v.strip()))
        if any(len(v) > MAX_KEYWORD_CHARS for v in keywords):
            raise InvalidLabels(f"{name}: a keyword is longer than {MAX_KEYWORD_CHARS} characters")
        return keywords
    if kind == "text":
        if not isinstance(value, str):
            raise InvalidLabels(f"{name}: expected a string")
        if len(value) > MAX_TEXT_CHARS:
            raise InvalidLabels(f"{name}: longer than {MAX_TEXT_CHARS} characters")
        return value.strip()
    raise InvalidLabels(f"{name}: unknown field type {kind!r}")


def check_labels(spec: LabelSpec, data: object) -> dict:
    """Every field present, no other key, every value allowed: the normalised labels."""
    if not isinstance(data, dict):
        raise InvalidLabels("the answer is not a JSON object")
    unknown = sorted(set(data) - set(spec.field_names))
    if unknown:
        raise InvalidLabels(f"unknown fields: {', '.join(unknown)}")
    missing = [name for name in spec.field_names if name not in data]
    if missing:
        raise InvalidLabels(f"missing fields: {', '.join(missing)}")
    return {field["name"]: check_value(field, data[field["name"]]) for field in spec.fields}


def field_guide(field: dict) -> str:
    kind = field["type"]
    if kind == "choice":
        allowed = "one of the listed values"
    elif kind == "integer":
        allowed = f"a whole number from {field['min']} to {field['max']}"
    elif kind == "keywords":
        allowed = f"up to {field.get('max_items') or DEFAULT_MAX_KEYWORDS} short keywords"
    else:
        allowed = "a short text"
    description = f": {field['description']}" if field.get("description") else ""
    return f"- {field['name']} ({allowed}){description}"


def question_text(item: WorkItem) -> str:
    """Text plus formulas: the LaTeX when the question has it (hint), else its MathML."""
    parts = []
    if item.text.strip():
        parts.append(item.text.strip())
    if item.hint.strip():
        parts.append(f"Formulas (LaTeX): {item.hint.strip()}")
    elif item.mathml.strip():
        parts.append(f"Formulas (MathML): {item.mathml.strip()}")
    text = "\n\n".join(parts)
    if len(text) > MAX_PROMPT_CHARS:
        text = text[:MAX_PROMPT_CHARS] + " [...]"
    return text


class LabelTask:
    """The LLMTask of a labeling job: one question in, one checked set of labels out."""

    kind = "label"
    prompt_version = LABEL_PROMPT_VERSION

    def __init__(self, spec: LabelSpec):
        self.spec = spec
        # One cached prefix per schema version: the system prompt is the schema's.
        self.prompt_cache_key = f"mathconv-{LABEL_PROMPT_VERSION}-{spec.name[:32]}-v{spec.version}"
        self._format = response_format(spec)
        self._system = "\n\n".join(
            [
                spec.instructions.strip(),
                "Fields to fill:\n" + "\n".join(field_guide(f) for f in spec.fields),
                "Answer with the JSON object only. Use only the allowed values.",
            ]
        )

    def build_messages(self, item: WorkItem) -> list[dict]:
        question = question_text(item)
        if not question:
            raise InvalidInput("the question has neither text nor formulas")
        # The question goes between fixed markers, like the conversion prompt's MathML, so
        # the prompt around it can change while a server can still find the input.
        user = "Label this question.\n" + block(QUESTION_BLOCK, question)
        return [
            {"role": "system", "content": self._system},
            {"role": "user", "content": user},
        ]

    def request_options(self, item: WorkItem) -> dict:
        return {
            "temperature": 0.0,
            "max_completion_tokens": MAX_OUTPUT_TOKENS,
            "prompt_cache_key": self.prompt_cache_key,
        }

    def response_format(self) -> dict:
        return self._format

    def parse(self, item: WorkItem, content: str) -> dict:
        try:
            data = json.loads(content)
        except (TypeError, ValueError) as exc:
            raise InvalidOutput(f"the answer is not JSON: {exc}") from exc
        try:
            return check_labels(self.spec, data)
        except InvalidLabels as exc:
            raise InvalidOutput(str(exc)) from exc

    def estimate_tokens(self, item: WorkItem) -> int:
        # About 3 characters a token for mixed Korean/English text and JSON, plus the
        # schema the server adds to the prompt and a short answer.
        prompt_chars = len(self._system) + len(question_text(item)) + 40
        schema_chars = len(json.dumps(self._format, ensure_ascii=False))
        return (prompt_chars + schema_chars) // 3 + MAX_OUTPUT_TOKENS
