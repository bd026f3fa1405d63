"""Whole question stems: HTML (or plain text) with zero or more MathML formulas.

A question bank's stem is HTML that holds text, markup and formulas:
`<p>넓이는 <math><mn>36</mn></math>이다.</p>`. `split_document` takes such a stem apart
into a template and its formulas; each formula is converted (and validated, cached,
reviewed) on its own, and `Stem.render` puts the results back, each formula written
`\\(...\\)` (inline) or `\\[...\\]` (`display="block"`), the delimiters MathLive's
`renderMathInElement` reads. `convert_document` does both with the rules converter.

Formulas are found in the forms producers write them:
- `<math>` / `<m:math>` / `<MATH>` elements in the markup;
- MathJax output, `<mjx-container>` with its `<mjx-assistive-mml>` copy of the MathML
  (MathJax 3 and 4): the drawn copy is dropped, the MathML converted; MathJax 4's
  `data-latex` is the author's input, not what the MathML says: it is only evidence,
  used where the converter fails and it passes every check (evidence.py);
- the Wiris/MathType web plugin's `<img data-mathml="«math ...»">` (safe XML).

The text and markup around the formulas are parsed with a real HTML parser (lxml.html:
`&nbsp;`, `<br>`, unclosed tags are fine) and the template is sanitised with nh3
(ammonia) against an allow-list of text markup, so the rendered stem is safe HTML: text
is escaped, scripts, styles, event handlers and javascript: links are dropped. The LaTeX
put back is HTML-escaped too.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import lxml.html
import nh3
from lxml import etree

from conversions.converters.errors import ConversionError
from conversions.converters.mathml import mathml_to_latex
from conversions.converters.messages import Message, _, joined
from conversions.converters.parse import decode_safe_xml

# One formula in a stem: <math ...>...</math>, with an optional prefix, any letter case.
_MATH_RE = re.compile(
    r"<(?P<prefix>[A-Za-z][\w.-]*:)?math\b(?P<attributes>[^>]*?)"
    r"(?:/>|>(?P<body>.*?)</(?P=prefix)?math\s*>)",
    re.IGNORECASE | re.DOTALL,
)
_DISPLAY_RE = re.compile(r"""\b(?:display\s*=\s*["']block["']|mode\s*=\s*["']display["'])""", re.I)
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARK_RE = re.compile(_MARK_OPEN + r"(\d+)" + _MARK_CLOSE)
_TAG_RE = re.compile(r"<[^>]*>")
_LOOSE_MATHML_RE = re.compile(
    r"<(?:[A-Za-z][\w.-]*:)?(?:mi|mn|mo|mrow|mfrac|msup|msub|msqrt|mtext|mtable)\b", re.I
)

# Text markup a stem keeps; everything else is unwrapped (its text kept) or, for scripts
# and styles, dropped with its content.
ALLOWED_TAGS = frozenset(
    [
        "p",
        "br",
        "div",
        "span",
        "b",
        "i",
        "u",
        "s",
        "strong",
        "em",
        "sub",
        "sup",
        "small",
        "mark",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "tr",
        "td",
        "th",
        "caption",
        "ul",
        "ol",
        "li",
        "dl",
        "dt",
        "dd",
        "blockquote",
        "pre",
        "code",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "img",
        "figure",
        "figcaption",
    ]
)
ALLOWED_ATTRIBUTES = {
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}


@dataclass(frozen=True)
class Formula:
    mathml: str
    display: bool = False  # display="block": written \[...\]


@dataclass(frozen=True)
class Stem:
    """A stem taken apart: `template` is sanitised HTML with one mark per formula."""

    template: str
    formulas: list[Formula] = field(default_factory=list)

    def render(self, latexes: list[str]) -> str:
        """The stem with formula i written as latexes[i] in \\(...\\) or \\[...\\].

        `latexes` must hold one LaTeX string per formula; the LaTeX is HTML-escaped."""
        if len(latexes) != len(self.formulas):
            raise ValueError(f"{len(self.formulas)} formulas, {len(latexes)} results")

        def put(match: re.Match) -> str:
            index = int(match.group(1))
            latex = html.escape(latexes[index], quote=False)
            if self.formulas[index].display:
                return "\\[" + latex + "\\]"
            return "\\(" + latex + "\\)"

        return _MARK_RE.sub(put, self.template)


@dataclass(frozen=True)
class FormulaResult:
    latex: str | None
    error: str | None = None


@dataclass(frozen=True)
class DocumentResult:
    """`document` is the converted stem (safe HTML), None when a formula failed; `formulas`
    holds each formula's result in order; `error` says which formulas failed and why
    (Messages: messages.py)."""

    document: str | None
    formulas: list[FormulaResult]
    error: str | None = None


def is_document(text: str) -> bool:
    """Whether `text` is a stem rather than one bare formula: it has text outside its
    formulas, or several formulas (an XML wrapper around one <math> is a formula)."""
    stripped = text.strip()
    if stripped.startswith("\u00ab") and "<" not in stripped:
        return False  # one formula in Wiris safe XML
    count = len(_MATH_RE.findall(stripped))
    if count > 1:
        return True
    outside_markup = _MATH_RE.sub("", stripped)
    if _LOOSE_MATHML_RE.search(outside_markup):
        return False  # MathML elements outside <math>: broken MathML, not a stem
    outside = _TAG_RE.sub("", outside_markup)
    # no formula and no text: neither a stem nor a formula, left to the MathML parser to say
    return bool(html.unescape(outside).strip())


def split_document(text: str) -> Stem:
    """A stem's template and formulas (see the module docstring for the forms read)."""
    text = text.replace(_MARK_OPEN, "").replace(_MARK_CLOSE, "")
    formulas: list[Formula] = []

    def mark(match: re.Match) -> str:
        display = _DISPLAY_RE.search(match.group("attributes") or "") is not None
        formulas.append(Formula(match.group(0), display))
        return _MARK_OPEN + str(len(formulas) - 1) + _MARK_CLOSE

    marked = _MATH_RE.sub(mark, text)
    if not marked.strip():
        return Stem("", formulas)
    root = lxml.html.fragment_fromstring(marked, create_parent="div")
    for img in root.xpath("//img[@data-mathml]"):
        formulas.append(Formula(decode_safe_xml(img.get("data-mathml") or "")))
        _replace(img, _MARK_OPEN + str(len(formulas) - 1) + _MARK_CLOSE)
    for container in root.xpath("//*[local-name()='mjx-container']"):
        # the drawn copy (SVG or CHTML) goes; the assistive MathML's mark stays
        found = _MARK_RE.findall("".join(container.itertext()))
        _replace(container, "".join(_MARK_OPEN + n + _MARK_CLOSE for n in found))
    inner = (root.text or "") + "".join(lxml.html.tostring(kid, encoding="unicode") for kid in root)
    template = nh3.clean(
        inner,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        clean_content_tags={"script", "style", "template", "textarea", "title"},
        url_schemes={"http", "https", "data"},
        link_rel=None,
    )
    return Stem(template, formulas)


def _replace(el: lxml.html.HtmlElement, text: str) -> None:
    """Put `text` where `el` was, keeping the text that followed it."""
    parent = el.getparent()
    tail = text + (el.tail or "")
    previous = el.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(el)


def convert_document(
    text: str,
    *,
    convert: Callable[[str], str] = mathml_to_latex,
) -> DocumentResult:
    """Convert a stem: every formula on its own with `convert` (MathML -> LaTeX, raising
    ConversionError), the text and markup kept and sanitised.

    The result's `document` is None when any formula failed; `error` then names each
    failed formula by its position ("formula 2/3: ...", in Korean "수식 2/3: ...")."""
    try:
        stem = split_document(text)
    except (ValueError, etree.ParserError) as exc:
        return DocumentResult(None, [], unreadable_document(exc))
    results: list[FormulaResult] = []
    for formula in stem.formulas:
        try:
            results.append(FormulaResult(convert(formula.mathml)))
        except ConversionError as exc:
            results.append(FormulaResult(None, exc.message))
    failed = [formula_reason(i, len(results), r.error) for i, r in enumerate(results) if r.error]
    if failed:
        return DocumentResult(None, results, joined(failed))
    return DocumentResult(stem.render([r.latex or "" for r in results]), results)


def unreadable_document(exc: BaseException) -> Message:
    """The reason for a stem whose markup cannot be read at all."""
    return _("the document cannot be read: %(error)s") % {"error": str(exc)}


def formula_reason(index: int, count: int, reason: object) -> Message:
    """A reason of formula `index` (0-based) of a stem of `count`: "formula 2/3: ...";
    `reason` a Message or its stored data (messages.py)."""
    return _("formula %(number)d/%(count)d: %(reason)s") % {
        "number": index + 1,
        "count": count,
        "reason": reason,
    }
