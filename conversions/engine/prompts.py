"""What the engine asks the model, and how it reads the answer (LLMTask implementations).

Inputs go into the user message between fixed markers (<<<MATHML ... MATHML>>>), so
that the prompt text around them can change between versions while a server (our
fake one in tests) can still find the input robustly.
"""

from __future__ import annotations

import json
import math

from conversions.engine.retry import InvalidInput, InvalidOutput
from conversions.engine.types import WorkItem

CONVERT_PROMPT_VERSION = "convert-v1"
CONVERT_SCHEMA_NAME = "latex_conversion"
MAX_LATEX_CHARS = 20_000


def block(name: str, content: str) -> str:
    return f"<<<{name}\n{content}\n{name}>>>"


def extract_block(name: str, text: str) -> str | None:
    """The content between <<<NAME and NAME>>>, or None when the markers are missing."""
    begin = f"<<<{name}\n"
    start = text.find(begin)
    if start < 0:
        return None
    start += len(begin)
    end = text.rfind(f"\n{name}>>>")
    if end < start:
        return None
    return text[start:end]


def estimate_text_tokens(*texts: str) -> int:
    # About four characters per token for English and markup; a little overhead per
    # message. Good enough to reserve budget; settle() corrects it with the real usage.
    return sum(math.ceil(len(text) / 4) + 4 for text in texts)


CONVERT_SYSTEM_PROMPT = """\
You convert MathML to LaTeX for the MathLive math editor.
Rules:
- Reproduce the mathematics exactly: every number, variable, operator, exponent, index,
  fraction, root and bracket in the MathML, and nothing else. Do not simplify or solve.
- Write plain LaTeX math as MathLive accepts it: \\frac{a}{b}, \\sqrt{x}, \\sqrt[n]{x},
  x^{2}, x_{i}, \\left( ... \\right), \\times, \\div, \\le, \\ge, \\ne, \\cdot,
  \\operatorname{name} for function names without a LaTeX command, \\text{...} for words.
- Use \\begin{pmatrix}...\\end{pmatrix} or \\begin{cases}...\\end{cases} for tables and
  piecewise definitions. No $ or \\( \\) delimiters, no \\displaystyle, no document commands.
- If a hint from a rule-based converter is given, use it only where it matches the MathML.
Answer with JSON: {"latex": "<the LaTeX>"}."""

_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


class ConversionTask:
    """MathML -> LaTeX through structured output {"latex": string} (prompt convert-v1)."""

    kind = "convert"
    prompt_version = CONVERT_PROMPT_VERSION

    def __init__(self, *, temperature: float | None = 0.0, max_output_tokens: int = 0) -> None:
        self.temperature = temperature
        self.fixed_max_output_tokens = max_output_tokens

    def build_messages(self, item: WorkItem) -> list[dict]:
        mathml = item.mathml.strip()
        if not mathml:
            raise InvalidInput("the question has no MathML")
        parts = ["Convert this MathML to LaTeX.", block("MATHML", mathml)]
        if item.hint.strip():
            parts.append("A rule-based converter produced this LaTeX (it may be wrong):")
            parts.append(block("HINT", item.hint.strip()))
        return [
            {"role": "system", "content": CONVERT_SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join(parts)},
        ]

    def response_format(self) -> dict:
        return {
            "type": "json_schema",
            "json_schema": {
                "name": CONVERT_SCHEMA_NAME,
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"latex": {"type": "string"}},
                    "required": ["latex"],
                    "additionalProperties": False,
                },
            },
        }

    def max_output_tokens(self, item: WorkItem) -> int:
        if self.fixed_max_output_tokens:
            return self.fixed_max_output_tokens
        # LaTeX is far shorter than its MathML; this leaves room for JSON escaping.
        return min(4096, 256 + len(item.mathml) // 8)

    def request_options(self, item: WorkItem) -> dict:
        options: dict = {"max_completion_tokens": self.max_output_tokens(item)}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return options

    def estimate_tokens(self, item: WorkItem) -> int:
        return (
            estimate_text_tokens(CONVERT_SYSTEM_PROMPT, item.mathml, item.hint)
            + 20
            + self.max_output_tokens(item)
        )

    def parse(self, item: WorkItem, content: str) -> dict:
        try:
            data = json.loads(content)
        except (TypeError, ValueError) as exc:
            raise InvalidOutput(f"the answer is not JSON: {exc}") from None
        if not isinstance(data, dict) or set(data) != {"latex"}:
            raise InvalidOutput('the answer is not {"latex": ...}')
        latex = data["latex"]
        if not isinstance(latex, str):
            raise InvalidOutput("latex is not a string")
        latex = strip_delimiters(latex.strip())
        if not latex:
            raise InvalidOutput("latex is empty")
        if len(latex) > MAX_LATEX_CHARS:
            raise InvalidOutput(f"latex is longer than {MAX_LATEX_CHARS} characters")
        return {"latex": latex}


def strip_delimiters(latex: str) -> str:
    for opening, closing in _DELIMITERS:
        if latex.startswith(opening) and latex.endswith(closing) and len(latex) > 2 * len(opening):
            inner = latex[len(opening) : -len(closing)]
            if opening not in inner and closing not in inner:
                return inner.strip()
    return latex
