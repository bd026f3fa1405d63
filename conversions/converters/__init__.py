"""Deterministic MathML -> LaTeX conversion and validation of results.

The API other parts call (issue 11):

- ``mathml_to_latex(mathml) -> str``: one formula (presentation MathML, the school subset
  of content MathML, Wiris safe XML, upper-case names); raises ConversionError (its
  message says why: a Message, stored language-neutrally and shown in the reader's
  language, messages.py) for anything it cannot write faithfully, unless the formula ships
  its author's LaTeX and that passes every check.
- ``trusted_author_latex(mathml) -> str | None`` (evidence.py): the author's LaTeX shipped
  with a formula (a TeX ``<annotation>``, MathJax 4's ``data-latex``) when it passes
  forbidden_commands, validate and account against the MathML; None for a stale one.
- ``account(mathml, latex) -> list[str]``: the no-silent-loss check for a result from any
  backend: one reason per character, fence, accent or line break the source draws
  and the LaTeX does not; ``[]`` when nothing is lost. Call it on every result.
- Whole question stems (HTML or text with zero or more formulas):
  ``is_document(text)`` tells a stem from a bare formula; ``split_document(text) -> Stem``
  gives ``Stem.formulas`` (``Formula(mathml, display)``) to convert, validate, cache and
  review one by one, and ``Stem.render(latexes) -> str`` puts the results back as safe
  HTML with ``\\(...\\)`` / ``\\[...\\]``; ``convert_document(text) -> DocumentResult``
  (``document``, ``formulas=[FormulaResult(latex, error)]``, ``error``) does it all with
  the rules converter (``document`` is None when a formula fails).
"""

from conversions.converters.accounting import account
from conversions.converters.document import (
    DocumentResult,
    Formula,
    FormulaResult,
    Stem,
    convert_document,
    is_document,
    split_document,
)
from conversions.converters.errors import ConversionError, InvalidMathML
from conversions.converters.evidence import trusted_author_latex
from conversions.converters.mathml import element_to_latex, mathml_to_latex
from conversions.converters.parse import normalize_mathml, parse_mathml
from conversions.converters.validate import VALIDATION_THRESHOLD, Validation, validate

__all__ = [
    "VALIDATION_THRESHOLD",
    "ConversionError",
    "DocumentResult",
    "Formula",
    "FormulaResult",
    "InvalidMathML",
    "Stem",
    "Validation",
    "account",
    "convert_document",
    "element_to_latex",
    "is_document",
    "mathml_to_latex",
    "normalize_mathml",
    "parse_mathml",
    "split_document",
    "trusted_author_latex",
    "validate",
]
