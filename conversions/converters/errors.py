"""Exceptions of the deterministic converter."""


class ConversionError(ValueError):
    """The converter cannot turn this MathML into LaTeX faithfully; the message says why."""


class InvalidMathML(ConversionError):
    """The input is not acceptable MathML (not well-formed, not <math>, too big or deep, ...)."""
