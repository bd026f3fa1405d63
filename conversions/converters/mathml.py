"""PLACEHOLDER: replaced by the real converter (issue 4)."""


class ConversionError(ValueError):
    pass


def mathml_to_latex(mathml: str) -> str:
    raise ConversionError("converter not implemented yet")
