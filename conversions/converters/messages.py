"""Translated messages for the converter and validator, also where Django is not set up.

The validator runs inside Django (workers, admin, commands), where its reasons follow the
active language (Korean with LANGUAGE_CODE=ko or a Korean browser), and in plain scripts
(bench/), where Django's settings are not configured and the English text is used.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext


def _(message: str) -> str:
    """`message` translated into the active language; itself without Django settings."""
    return gettext(message) if settings.configured else message
