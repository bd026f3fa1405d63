"""The author's LaTeX shipped with a formula: evidence, never trusted blindly.

Some producers keep the LaTeX the author typed next to the MathML they drew from it:

- an `<annotation>` of the formula's top-level `<semantics>` whose encoding names TeX
  (`application/x-tex`, the MathML 3 recommendation; `TeX`, `LaTeX`, `text/x-tex`, ...
  as editors write it);
- MathJax 4's `data-latex` attribute on `<math>` (its assistive MathML carries it).

Annotations go stale: the MathML is edited and the LaTeX is not (the Wiris editor even
writes a placeholder). So such LaTeX is used only when it passes, against the
presentation markup, every check a result from any backend must pass:
`commands.forbidden_commands` (nothing that links, styles or scripts), `validate` (what
MathLive reads; the round trip draws the same characters, structure and styles) and
`accounting.account` (nothing the source draws is lost). Otherwise it is ignored.

The rules converter falls back on it where it refuses a formula
(`mathml.mathml_to_latex`), and the rules backend where its own LaTeX fails the checks
(`conversions.results.rules_result`).
"""

from __future__ import annotations

from lxml import etree

from conversions.converters.accounting import account
from conversions.converters.commands import forbidden_commands
from conversions.converters.errors import InvalidMathML
from conversions.converters.parse import local_name, parse_mathml
from conversions.converters.validate import validate

# Encodings of an <annotation> that holds TeX or LaTeX (compared in lower case).
TEX_ENCODINGS = frozenset(
    {
        "application/x-tex",
        "application/x-latex",
        "application/tex",
        "application/latex",
        "text/x-tex",
        "text/x-latex",
        "text/tex",
        "text/latex",
        "tex",
        "latex",
    }
)
# Longer LaTeX than this is not read from an annotation (the validator's round trip on
# a huge string would cost more than the formula is worth).
MAX_LATEX_CHARS = 20_000


def author_latexes(math: etree._Element) -> list[str]:
    """The LaTeX the producer shipped with a parsed <math>, in the order found: its
    `data-latex`, then the TeX annotations of its top-level <semantics>. Unchecked."""
    found: list[str] = []
    data_latex = (math.get("data-latex") or "").strip()
    if data_latex:
        found.append(data_latex)
    top = math
    # through lone rows and styles, as the formula's top level is read elsewhere
    while len(top) == 1 and isinstance(top[0].tag, str):
        name = local_name(top[0].tag)
        if name not in ("mrow", "mstyle", "semantics"):
            break
        top = top[0]
        if name == "semantics":
            for kid in top:
                if not isinstance(kid.tag, str) or local_name(kid.tag) != "annotation":
                    continue
                encoding = (kid.get("encoding") or "").strip().lower()
                latex = "".join(str(part) for part in kid.itertext()).strip()
                if encoding in TEX_ENCODINGS and latex and latex not in found:
                    found.append(latex)
            break
    return [latex for latex in found if len(latex) <= MAX_LATEX_CHARS]


def passes_checks(mathml: str, latex: str) -> bool:
    """Whether `latex` may stand for `mathml`: no forbidden command, validated (syntax,
    round trip, style), nothing lost by the accounting check."""
    if forbidden_commands(latex):
        return False
    if not validate(mathml, latex).ok:
        return False
    return not account(mathml, latex)


def trusted_author_latex(mathml: str, math: etree._Element | None = None) -> str | None:
    """The first LaTeX shipped with `mathml` that passes every check, else None.

    `math` is the formula parsed by parse_mathml, when the caller has it. Never raises:
    unreadable MathML has no usable annotation."""
    if math is None:
        try:
            math = parse_mathml(mathml)
        except InvalidMathML:
            return None
    for latex in author_latexes(math):
        if passes_checks(mathml, latex):
            return latex
    return None
