"""Deterministic MathML -> LaTeX conversion and validation of results."""

from conversions.converters.mathml import ConversionError, mathml_to_latex

__all__ = ["ConversionError", "mathml_to_latex"]
