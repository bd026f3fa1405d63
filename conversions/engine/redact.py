"""The one secret redactor: what a log line, an error message or a stored excerpt shows.

Plain Python (the engine's rule: no Django), so the engine redacts before anything
leaves it and the admin redacts again whatever it shows (an excerpt stored by an older
version, or written by hand).
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

_PATTERNS = (
    # Header lines of a request dump: the whole value goes.
    (
        re.compile(r"(?im)^(\s*(?:proxy-)?authorization|\s*(?:x-)?api-key|\s*cookie)\s*:.*$"),
        rf"\1: {REDACTED}",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), f"Bearer {REDACTED}"),
    # Keys look like sk-..., sk-proj-..., rk-..., and the API echoes a masked key in 401
    # messages ("Incorrect API key provided: sk-abc***xyz").
    (re.compile(r"\b(?:sk|rk|sess)-[A-Za-z0-9_\-*]{6,}"), REDACTED),
    # "api_key": "...", secret=... in JSON or query strings.
    (
        re.compile(
            r"(?i)(\"?(?:api[_-]?key|authorization|secret)\"?\s*[:=]\s*)(?!\[redacted)\"?[^\s\",}]+\"?"
        ),
        rf'\1"{REDACTED}"',
    ),
)


# Every pattern above needs one of these words, matched case-insensitively: a text
# without any is returned after one lower() and a few substring searches instead of four
# regex scans (the engine redacts two excerpts of every call). Under re.IGNORECASE these
# characters also match ASCII letters (K for k, ſ for s, İ and ı for i), and İ changes
# length in lower(): a text with one of them goes through the patterns.
_WORDS = ("authorization", "api-key", "api_key", "apikey", "cookie", "bearer", "secret")
_KEY_PREFIXES = ("sk-", "rk-", "sess-")
_LOOKALIKES = ("\u0130", "\u0131", "\u017f", "\u212a")


def _may_match(text: str) -> bool:
    if not text.isascii() and any(c in text for c in _LOOKALIKES):
        return True
    lowered = text.lower()
    return any(word in lowered for word in _WORDS) or any(k in lowered for k in _KEY_PREFIXES)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """text without the given secrets (six characters or longer) and anything that looks
    like a key, a bearer token or an auth header."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    if not _may_match(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
