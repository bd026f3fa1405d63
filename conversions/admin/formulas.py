"""Formulas drawn where a person reads them, with the raw text one click away.

Two renderers, both fed only what is safe for them:
- MathML goes through conversions.sanitize.sanitize_mathml (nh3 with the MathML
  allow-list) and is drawn by the browser's own MathML;
- LaTeX goes to a read-only MathLive <math-field> only when
  conversions.sanitize.latex_is_renderable accepts it (no command that links, styles
  or scripts); otherwise the page says why it is not drawn. The LaTeX is the element's
  text content, escaped by format_html: MathLive reads it as a value, never as markup.
Pages that use latex_html load MathLive (MATHLIVE_MEDIA, or the template's own script).
"""

from __future__ import annotations

from django import forms
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from conversions.sanitize import latex_is_renderable, sanitize_mathml

MATHLIVE_MEDIA = forms.Media(
    js=["vendor/mathlive/mathlive.min.js"], css={"all": ["conversions/admin.css"]}
)
EMPTY = "–"


def mathml_html(mathml: str, *, raw: bool = True) -> SafeString | str:
    """The MathML drawn (sanitised markup in <div class="mc-formula">), followed by the raw
    source in a <details> when raw is True. "–" when there is nothing to draw."""
    safe = sanitize_mathml(mathml or "")
    if not safe:
        return EMPTY if not mathml else _raw(mathml)
    # nh3 output with an explicit MathML allow-list: the one place markup is trusted.
    drawn = format_html('<div class="mc-mathml">{}</div>', mark_safe(safe))  # noqa: S308
    return format_html("{}{}", drawn, _raw(mathml)) if raw else drawn


def latex_html(latex: str, *, raw: bool = True) -> SafeString | str:
    """The LaTeX drawn by MathLive (read-only <math-field>), or a sentence saying why it
    is not drawn, followed by the raw LaTeX in a <details> when raw is True."""
    if not latex:
        return EMPTY
    if latex_is_renderable(latex):
        drawn = format_html('<math-field read-only class="mc-formula">{}</math-field>', latex)
    else:
        drawn = format_html(
            '<p class="mc-not-rendered">{}</p>',
            _("Not rendered: the LaTeX uses commands that produce HTML."),
        )
    return format_html("{}{}", drawn, _raw(latex)) if raw else drawn


def _raw(text: str) -> SafeString:
    return format_html(
        '<details class="mc-raw"><summary>{}</summary><pre class="mc-code">{}</pre></details>',
        _("Source"),
        text,
    )
