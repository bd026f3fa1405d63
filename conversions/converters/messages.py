"""Reasons in any language: translatable messages kept language-neutral until shown.

A reason (a converter's refusal, a validator's finding, a stem's failed formula) is
made with `_("msgid with %(name)s") % {"name": value}` in the converter's modules, or
`Message(gettext_noop("..."), {...})` elsewhere. A Message is a str: its text in the
language active when it was made (so code that prints, joins or compares reasons works
as with plain text), and `data`, its language-neutral form, which is what is stored
(Item.validation_reasons, Item/Job.error_reason, the "error" and "reasons" of a stem's
formula entries) and shown again later in the reader's language with `render`:

    Reason = str                                  a text shown as it is: rows from before
                                                  issue 12, an API's or libxml2's words
           | {"msgid": str, "params": {name: P}}  a message ("params" left out when none)
           | [Reason, ...]                        reasons joined with "; "
    P      = int | float                          a number, formatted by the placeholder
           | str                                  literal: a symbol, LaTeX, an element name
           | dict | list                          a Reason, itself translated when shown

Which text goes where (the decision of issue 12):

- the admin, the review screen's JSON and the job page render the stored data in the
  request's language (LocaleMiddleware): `render`, or `shown` for an error column pair;
- exports and management commands render it in LANGUAGE_CODE (the language active
  outside a request; exporting.py says so explicitly), notifications in
  MATHCONV_NOTIFY_LANGUAGE;
- the error_message columns hold `source_text`: the msgids written out (English), the
  same text whatever language the worker runs in. It is the key the failures page
  groups by and its "show items" links filter on (error_message__startswith), so the
  same reason groups together in every language. The job's log file writes reasons
  in the source language too, like its other lines, so that grep finds them there.
  `shown` uses the stored data only while its source text is still error_message, so a
  writer that sets error_message alone never shows a stale reason.
- plain text is shown as it is in every language: rows written before issue 12 (in
  their worker's language; they group by that text, apart from new rows of the same
  reason, until retried) and the words of an API, libxml2 or the engine (conversions/
  engine has no Django, so its messages stay English).

A msgid that is no longer in the catalogue (changed since the row was written) is shown
untranslated; a translation whose placeholders do not fit the stored params falls back
to the msgid. Outside Django (bench/: settings not configured) msgids are used as they
are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils import translation

ERROR_CHARS = 2000  # the error_message columns keep this much of the source text

Reason = Any  # the JSON form above; Any because JSON has no precise type here


def _translated(msgid: str) -> str:
    return translation.gettext(msgid) if settings.configured else msgid


def is_message(data: object) -> bool:
    return isinstance(data, dict) and isinstance(data.get("msgid"), str)


def render(data: Reason, language: str | None = None) -> str:
    """Stored reason data as text in the active language (or in `language`); "" for None."""
    if language is not None:
        with translation.override(language):
            return render(data)
    if data is None:
        return ""
    if isinstance(data, list):
        return "; ".join(render(part) for part in data)
    if not is_message(data):
        return str(data)
    msgid = data["msgid"]
    text = _translated(msgid)
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        return text
    values = {
        name: value if isinstance(value, int | float | str) else render(value)
        for name, value in params.items()
    }
    for template in (text, msgid):
        try:
            return template % values
        except (KeyError, TypeError, ValueError):
            continue
    return msgid


def source_text(data: Reason) -> str:
    """The data written out in the source language (the msgids: English)."""
    if not settings.configured:
        return render(data)
    with translation.override(None):
        return render(data)


def message_data(value: object) -> Reason:
    """What is stored for a reason: a Message's data, a list's items', the message a
    ConversionError was raised with; any other value as its text."""
    if isinstance(value, Message):
        return value.data
    if isinstance(value, BaseException):
        args = value.args
        return args[0].data if len(args) == 1 and isinstance(args[0], Message) else str(value)
    if isinstance(value, list | tuple):
        return [message_data(part) for part in value]
    if is_message(value):
        return value
    return str(value)


def _param(value: object) -> Reason:
    return value if isinstance(value, int | float) else message_data(value)


class Message(str):
    """A reason: its text in the active language, and `data` to store (module docstring).

    `Message(msgid, params)`; `Message.of(data)` for stored data; `message % params`
    fills in a message made without params (what `_` returns), as with gettext.
    """

    data: Reason

    def __new__(cls, msgid: str, params: Mapping[str, object] | None = None) -> Message:
        data: dict[str, Any] = {"msgid": msgid}
        if params:
            data["params"] = {name: _param(value) for name, value in params.items()}
        return cls.of(data)

    @classmethod
    def of(cls, data: Reason) -> Message:
        message = str.__new__(cls, render(data))
        message.data = data
        return message

    def __mod__(self, params: object) -> Message:
        if not is_message(self.data) or "params" in self.data or not isinstance(params, Mapping):
            raise TypeError("a message takes its named parameters once, as a mapping")
        return Message(self.data["msgid"], params)

    def __reduce__(self):
        # Unpickled (or copied), a Message is made again from its data: its text is in
        # the language active then.
        return (_from_data, (self.data,))


def _from_data(data: Reason) -> Message:
    return Message.of(data)


def joined(reasons: list) -> Message:
    """Several reasons as one, shown joined with "; "."""
    return Message.of([message_data(reason) for reason in reasons])


def _(message: str) -> Message:
    """`message` (a msgid) as a Message in the active language; `% {...}` fills it in."""
    return Message(message)


def error_fields(error: object) -> dict[str, Any]:
    """The columns an error (a Message, or plain text) is stored in, Item's and Job's:
    {"error_message": its source text cut to ERROR_CHARS, "error_reason": its data, None
    for plain text}."""
    data = message_data(error) if error is not None else ""
    return {
        "error_message": source_text(data)[:ERROR_CHARS],
        "error_reason": None if isinstance(data, str) else data,
    }


def shown(message: str, reason: Reason) -> str:
    """What an error column pair says in the active language: the stored data rendered
    while error_message is still its source text, else error_message as it is."""
    if reason is None or source_text(reason)[:ERROR_CHARS] != message:
        return message
    return render(reason)
