"""Exceptions of the deterministic converter.

Raised with a Message (messages.py: `_("...%(name)s") % {...}`), so that the reason
can be stored language-neutrally and shown in the reader's language (issue 12);
str(exc) is its text in the language active when it was raised.
"""

from conversions.converters.messages import Message, message_data


class ConversionError(ValueError):
    """The converter cannot turn this MathML into LaTeX faithfully; the message says why."""

    @property
    def message(self) -> str:
        """The reason as a Message (its stored form: message_data(exc)); plain text when
        raised with a plain string."""
        return Message.of(message_data(self))


class InvalidMathML(ConversionError):
    """The input is not acceptable MathML (not well-formed, not <math>, too big or deep, ...)."""
