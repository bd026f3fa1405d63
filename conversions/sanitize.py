"""Make untrusted MathML and LLM output safe to put on an admin page.

MathML from the question bank is rendered by the browser itself (native MathML), so
it goes through nh3 (ammonia) with an explicit allow-list of presentation MathML
elements and attributes. Everything else is dropped: scripts, styles, links (href,
xlink:href), event handlers, `annotation-xml` (which can switch the parser back to
HTML), `maction` (interactive), `mglyph` (loads images), ids and classes (DOM
clobbering). ammonia parses with the HTML5 algorithm the browser uses and checks that
elements stay in their namespace, which closes the mutation-XSS tricks that rely on
<math>/<svg> parsing quirks.
"""

from __future__ import annotations

import re

import nh3
from django.conf import settings

from conversions.converters.commands import forbidden_commands

MATHML_TAGS = frozenset(
    {
        "math",
        "semantics",  # kept for its first child; annotations are dropped with their content
        "mrow",
        "mi",
        "mn",
        "mo",
        "ms",
        "mtext",
        "mspace",
        "mfrac",
        "msqrt",
        "mroot",
        "msub",
        "msup",
        "msubsup",
        "munder",
        "mover",
        "munderover",
        "mmultiscripts",
        "mprescripts",
        "none",
        "mtable",
        "mtr",
        "mtd",
        "mlabeledtr",
        "mpadded",
        "mphantom",
        "menclose",
        "mstyle",
        "merror",
        "mfenced",
    }
)

# Removed together with everything inside them (not just unwrapped), so their text
# does not leak into the formula either.
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "annotation", "annotation-xml", "maction", "mglyph", "template"}
)

MATHML_ATTRIBUTES = frozenset(
    {
        "display",
        "dir",
        "displaystyle",
        "scriptlevel",
        "mathvariant",
        "mathsize",
        "form",
        "fence",
        "separator",
        "stretchy",
        "symmetric",
        "largeop",
        "movablelimits",
        "accent",
        "accentunder",
        "lspace",
        "rspace",
        "minsize",
        "maxsize",
        "width",
        "height",
        "depth",
        "voffset",
        "linethickness",
        "bevelled",
        "numalign",
        "denomalign",
        "notation",
        "open",
        "close",
        "separators",
        "align",
        "columnalign",
        "rowalign",
        "columnspan",
        "rowspan",
        "columnlines",
        "rowlines",
        "columnspacing",
        "rowspacing",
        "frame",
        "framespacing",
        "equalrows",
        "equalcolumns",
    }
)

_XML_PROLOGUE = re.compile(r"<\?xml[^>]*>|<!DOCTYPE[^>]*>", re.IGNORECASE)
# <m:mi> / </mml:math>: the HTML parser does not know namespace prefixes, so drop them.
_TAG_PREFIX = re.compile(r"<(/?)[A-Za-z][\w.-]*:(?=[A-Za-z])")
_HAS_MATH_ROOT = re.compile(r"^\s*<math[\s>/]", re.IGNORECASE)


def sanitize_mathml(mathml: str) -> str:
    """Return MathML safe to insert into a page as HTML ('' when there is nothing to show)."""
    if not mathml or len(mathml.encode()) > settings.MATHCONV_MAX_MATHML_BYTES:
        return ""
    text = _TAG_PREFIX.sub(r"<\1", _XML_PROLOGUE.sub("", mathml))
    if not _HAS_MATH_ROOT.match(text):
        text = f"<math>{text}</math>"
    # nh3 runs last: whatever the clean-up above did, only its output reaches the page.
    return nh3.clean(
        text,
        tags=set(MATHML_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={"*": set(MATHML_ATTRIBUTES)},
        url_schemes=set(),
        link_rel=None,
        strip_comments=True,
    )


def latex_is_renderable(latex: str) -> bool:
    """True when the LaTeX may be handed to MathLive: none of the commands that link,
    style or script (the validator's list, conversions.converters.commands)."""
    return not forbidden_commands(latex or "")


def withheld_latex(commands: list[str]) -> str:
    """The marker that stands for a stored LaTeX carrying forbidden commands, e.g.
    "[withheld: LaTeX with \\href]". Not LaTeX; the import ignores the exported LaTeX
    columns, so it never comes back in."""
    return f"[withheld: LaTeX with {' '.join(commands)}]"


def latex_for_output(latex: str | None) -> str | None:
    """`latex` unchanged, or withheld_latex(...) when it carries a command that links,
    styles or scripts (DESIGN invariant 11: exports and the JSON endpoints never carry
    one, even from a row stored before the validator refused it)."""
    if not latex:
        return latex
    forbidden = forbidden_commands(latex)
    return withheld_latex(forbidden) if forbidden else latex
