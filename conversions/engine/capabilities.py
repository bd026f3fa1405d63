"""Request parameters a model accepts, from the endpoint's model settings.

Reasoning models (o-series, GPT-5 line) answer 400 to `temperature`; Ollama and older
servers read `max_tokens`, not `max_completion_tokens`; `prompt_cache_key` is OpenAI's
(and Azure OpenAI's) alone. The task asks for what it wants (request_options); this
module drops or renames what the endpoint's model does not take.
"""

from __future__ import annotations

import re

from conversions.engine.types import Endpoint

MAX_TOKENS_NAMES = ("max_completion_tokens", "max_tokens")
# A 400 that names a parameter the model does not take (OpenAI: code
# "unsupported_parameter" / "unsupported_value", param "temperature").
_UNSUPPORTED = re.compile(r"unsupported[_ ](parameter|value)", re.IGNORECASE)


def adapt_options(options: dict, endpoint: Endpoint) -> dict:
    """options with temperature and prompt_cache_key dropped where the endpoint's model
    does not take them, and the max-tokens parameter renamed or dropped."""
    adapted = dict(options)
    if not endpoint.accepts_temperature:
        adapted.pop("temperature", None)
    if not endpoint.prompt_cache_key:
        adapted.pop("prompt_cache_key", None)
    limit = None
    for name in MAX_TOKENS_NAMES:
        limit = adapted.pop(name, limit)
    if limit is not None and endpoint.max_tokens_param in MAX_TOKENS_NAMES:
        adapted[endpoint.max_tokens_param] = limit
    return adapted


def unsupported_parameter(status: int | None, text: str) -> str | None:
    """The parameter a 400 answer says the model does not support, or None.

    Reads the OpenAI error shape ("param": "temperature", code unsupported_parameter)
    and falls back to the first known parameter named in the message.
    """
    if status != 400 or not _UNSUPPORTED.search(text or ""):
        return None
    match = re.search(r'"param"\s*:\s*"([A-Za-z_]+)"', text)
    if match:
        return match.group(1)
    for name in ("temperature", *MAX_TOKENS_NAMES, "response_format", "prompt_cache_key"):
        if name in text:
            return name
    return "?"
