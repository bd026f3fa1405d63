"""What the fake server answers: the correct LaTeX for a MathML, plausible wrong variants,
and instances of any JSON schema. Pure functions, seeded, so a run is reproducible."""

from __future__ import annotations

import hashlib
import html
import math
import random
import re
from collections.abc import Callable
from functools import lru_cache

from conversions.converters import mathml_to_latex
from conversions.engine.prompts import extract_block


def input_key(text: str) -> str:
    """The stable key of one input in /_stats: sha256 of the stripped text, 16 hex digits."""
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def request_input(user_text: str) -> str:
    """The input a request is about: the MathML block if there is one, else the user text."""
    mathml = extract_block("MATHML", user_text)
    return mathml if mathml is not None else user_text


# -- answers ---------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"<(mi|mn|mo|mtext|ms)\b[^>]*>(.*?)</\1>", re.S)


def fallback_latex(mathml: str) -> str:
    """A deterministic LaTeX derived from the MathML's tokens, when the converter fails."""
    tokens = [html.unescape(text).strip() for _, text in _TOKEN_RE.findall(mathml)]
    latex = " ".join(token for token in tokens if token)
    return latex or "x"


@lru_cache(maxsize=20_000)
def expected_latex(mathml: str) -> str:
    """The correct answer the server gives for this MathML."""
    try:
        latex = mathml_to_latex(mathml)
    except Exception:  # the converter is allowed to fail; the fallback never does
        return fallback_latex(mathml)
    return latex.strip() or fallback_latex(mathml)


def seeded(seed: int, *parts: object) -> random.Random:
    # random.Random(str) hashes the string with SHA-512: stable across processes.
    return random.Random(":".join(str(part) for part in (seed, *parts)))


def _balanced(text: str, start: int) -> int:
    """Index just past the {...} group that starts at text[start] == "{", or -1."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char == "\\":
            continue
        if char == "{" and (index == 0 or text[index - 1] != "\\"):
            depth += 1
        elif char == "}" and text[index - 1] != "\\":
            depth -= 1
            if depth == 0:
                return index + 1
    return -1


def _swap_fraction(latex: str, rng: random.Random) -> str | None:
    at = latex.find("\\frac{")
    if at < 0:
        return None
    first_start = at + len("\\frac")
    first_end = _balanced(latex, first_start)
    if first_end < 0 or first_end >= len(latex) or latex[first_end] != "{":
        return None
    second_end = _balanced(latex, first_end)
    if second_end < 0:
        return None
    numerator, denominator = latex[first_start:first_end], latex[first_end:second_end]
    if numerator == denominator:
        return None
    return latex[:first_start] + denominator + numerator + latex[second_end:]


def _drop_exponent(latex: str, rng: random.Random) -> str | None:
    at = latex.find("^")
    if at < 0 or at + 1 >= len(latex):
        return None
    if latex[at + 1] == "{":
        end = _balanced(latex, at + 1)
        if end < 0:
            return None
    else:
        end = at + 2
    return latex[:at] + latex[end:]


def _change_digit(latex: str, rng: random.Random) -> str | None:
    digits = [index for index, char in enumerate(latex) if char.isdigit()]
    if not digits:
        return None
    index = rng.choice(digits)
    return latex[:index] + str((int(latex[index]) + 1 + rng.randrange(8)) % 10) + latex[index + 1 :]


_OPERATOR_SWAPS = (("+", "-"), ("-", "+"), ("=", "<"), ("\\times", "+"), ("\\le", "\\ge"))


def _change_operator(latex: str, rng: random.Random) -> str | None:
    for old, new in _OPERATOR_SWAPS:
        if old in latex:
            return latex.replace(old, new, 1)
    return None


def _drop_root(latex: str, rng: random.Random) -> str | None:
    at = latex.find("\\sqrt")
    if at < 0:
        return None
    cursor = at + len("\\sqrt")
    if cursor < len(latex) and latex[cursor] == "[":
        close = latex.find("]", cursor)
        if close < 0:
            return None
        cursor = close + 1
    if cursor >= len(latex) or latex[cursor] != "{":
        return None
    end = _balanced(latex, cursor)
    if end < 0:
        return None
    return latex[:at] + latex[cursor + 1 : end - 1] + latex[end:]


MUTATIONS: tuple[Callable[[str, random.Random], str | None], ...] = (
    _swap_fraction,
    _drop_exponent,
    _change_digit,
    _change_operator,
    _drop_root,
)


def wrong_latex(latex: str, rng: random.Random) -> str:
    """A plausible but wrong variant: swapped fraction, lost exponent, changed digit or
    operator, dropped root. Always differs from the input."""
    candidates = [mutated for mutate in MUTATIONS if (mutated := mutate(latex, rng))]
    candidates = [mutated for mutated in candidates if mutated != latex]
    if candidates:
        return rng.choice(candidates)
    return latex + "+1"


_DRAWN_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[A-Za-z0-9]")


def dropped_latex(latex: str) -> str:
    """The answer with its last letter or digit left out (not one of a command's name):
    a wrong answer of the kind only the no-silent-loss check is sure to catch."""
    last = [m for m in _DRAWN_TOKEN.finditer(latex) if len(m.group(0)) == 1]
    if not last:
        return latex
    at = last[-1].start()
    return latex[:at] + latex[at + 1 :]


def schema_instance(schema: dict, rng: random.Random, *, wrong: bool = False) -> object:
    """A deterministic value satisfying a JSON schema (or, when wrong, one that breaks it)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return schema_instance(options[0] if options else {"type": "null"}, rng, wrong=wrong)
    if "enum" in schema:
        return "not-a-valid-choice" if wrong else rng.choice(schema["enum"])
    if kind == "object":
        properties = schema.get("properties", {})
        # Break one field, keep the others valid, so a validator must look at each.
        broken = rng.choice(sorted(properties)) if wrong and properties else None
        return {
            name: schema_instance(sub, rng, wrong=(name == broken))
            for name, sub in properties.items()
        }
    if kind == "array":
        low = schema.get("minItems", 1 if schema.get("items") else 0)
        high = schema.get("maxItems", max(low, 3))
        if wrong and "maxItems" in schema:
            count = high + 1
        else:
            count = rng.randint(low, max(low, min(high, low + 3)))
        return [schema_instance(schema.get("items", {}), rng) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        high = schema.get("maximum", low + 10)
        if wrong:
            return high + 1 if kind == "integer" else high + 1.5
        return (
            rng.randint(math.ceil(low), math.floor(high))
            if kind == "integer"
            else round(rng.uniform(low, high), 2)
        )
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        if wrong and "maxLength" in schema:
            return "x" * (schema["maxLength"] + 1)
        return f"value-{rng.randrange(10_000):04d}"[: schema.get("maxLength", 64)]
    return None


def is_conversion_schema(schema: dict) -> bool:
    return "latex" in (schema.get("properties") or {})
