"""Deterministic MathML -> LaTeX conversion and validation of results."""

from conversions.converters.errors import ConversionError, InvalidMathML
from conversions.converters.mathml import element_to_latex, mathml_to_latex
from conversions.converters.parse import normalize_mathml, parse_mathml

__all__ = [
    "ConversionError",
    "InvalidMathML",
    "element_to_latex",
    "mathml_to_latex",
    "normalize_mathml",
    "parse_mathml",
]
