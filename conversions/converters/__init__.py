"""Deterministic MathML -> LaTeX conversion and validation of results."""

from conversions.converters.errors import ConversionError, InvalidMathML
from conversions.converters.mathml import element_to_latex, mathml_to_latex
from conversions.converters.parse import normalize_mathml, parse_mathml
from conversions.converters.validate import VALIDATION_THRESHOLD, Validation, validate

__all__ = [
    "VALIDATION_THRESHOLD",
    "ConversionError",
    "InvalidMathML",
    "Validation",
    "element_to_latex",
    "mathml_to_latex",
    "normalize_mathml",
    "parse_mathml",
    "validate",
]
