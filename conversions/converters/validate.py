"""Automatic check of a LaTeX result against the MathML it came from (any backend).

Checks, in order:

- commands (commands.py): no command that links, styles or scripts, and every command
  with its required arguments;
- syntax (syntax.py): what MathLive would refuse (braces, environments, unknown commands);
- colour, size and spacing commands only where the source draws colour, size or space;
- round trip: the LaTeX is turned back into MathML with latex2mathml (readback.py first
  rewrites what latex2mathml misreads) and both formulas are reduced to the same normal
  form - the sequence of their characters, each letter or digit with its style (italic,
  upright, bold, ...; as the judge in shared/tools/judge compares them), with markers for
  structure (fraction, root, script, table cell ...), spacing, sizes, colours and fence
  stretching left out - and compared token by token; reasons.py words the differences.

The score is 1.0 when the normal forms agree. Each differing token costs a factor of
0.85 on top of the share of tokens that differ, so a single swapped, lost or changed
symbol already scores below VALIDATION_THRESHOLD: a result only passes when nothing
that is drawn has changed.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field

from latex2mathml.converter import convert as latex_to_mathml
from latex2mathml.symbols_parser import convert_symbol
from lxml import etree

from conversions.converters import symbols as sym
from conversions.converters.commands import (
    argument_problems,
    forbidden_commands,
    style_commands,
)
from conversions.converters.errors import InvalidMathML
from conversions.converters.messages import _
from conversions.converters.parse import local_name, parse_mathml
from conversions.converters.readback import readable_by_latex2mathml
from conversions.converters.reasons import END, INDEX, OVER, STYLE_MARK, describe, swapped_fractions
from conversions.converters.syntax import syntax_problems
from conversions.converters.tables import LARGEOP_OPERATORS, SYMBOL_COMMANDS

VALIDATION_THRESHOLD = 0.9
_ERROR_FACTOR = 0.85
# Normal-form markers that no character token can be: the end of every structure, the
# fraction bar and the index of a root; a styled letter is "x" + STYLE_MARK + "it".


@dataclass(frozen=True)
class Validation:
    score: float  # 0..1, 1.0 when the round trip gives back the source
    ok: bool  # syntax_ok and score >= threshold
    reasons: list[str] = field(default_factory=list)
    syntax_ok: bool = True


def validate(mathml: str, latex: str, *, threshold: float = VALIDATION_THRESHOLD) -> Validation:
    """Check `latex` against the `mathml` it should draw.

    Returns a Validation: score 0..1 (1.0 when the round trip gives back the source), ok
    (the LaTeX may be stored as a success), reasons (short sentences in the active
    language, Messages that keep their language-neutral form: messages.py) and
    syntax_ok (MathLive would read the LaTeX). Never raises on bad input.
    LaTeX with a forbidden command (commands.forbidden_commands) scores 0 whatever it
    draws; a missing argument is a syntax problem; a colour, size or spacing command
    where the source draws none fails, as does any difference in what is drawn,
    letter styles (italic, upright, bold, ...) included.
    """
    forbidden = forbidden_commands(latex)
    if forbidden:
        reason = _("the LaTeX uses %(commands)s, which may link, style or script") % {
            "commands": ", ".join(forbidden)
        }
        return Validation(0.0, False, [reason], False)
    reasons = syntax_problems(latex) + argument_problems(latex)
    syntax_ok = not reasons
    try:
        root = parse_mathml(mathml)
        source = normal_form(root)
    except InvalidMathML as exc:
        return Validation(
            0.0,
            False,
            [*reasons, _("the source MathML is not usable: %(error)s") % {"error": exc}],
            syntax_ok,
        )
    try:
        result = latex_normal_form(latex)
    except Exception:  # latex2mathml raises many types for LaTeX it cannot read
        reasons.append(_("the LaTeX cannot be read back"))
        return Validation(0.0, False, reasons, syntax_ok)
    styling = style_problems(root, latex)
    score, differences = compare(source, result)
    reasons.extend(styling)
    reasons.extend(differences)
    score = round(score * _ERROR_FACTOR ** len(styling), 4)
    ok = syntax_ok and not styling and score >= threshold
    return Validation(score, ok, reasons, syntax_ok)


def style_problems(root: etree._Element, latex: str) -> list[str]:
    """Colour, size and spacing commands of `latex` where the source draws no such thing."""
    drawn = {"colour": False, "size": False, "spacing": False}
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        attributes = el.attrib
        if {"mathcolor", "mathbackground", "color", "background"} & set(attributes) or (
            "color" in attributes.get("style", "")
        ):
            drawn["colour"] = True
        if {"mathsize", "fontsize"} & set(attributes):
            drawn["size"] = True
        name = local_name(el.tag)
        if name in ("mspace", "mpadded", "mphantom") or (
            # a framed table's framespacing is space between its frame and its cells
            name == "mtable" and (attributes.get("frame") or "none").strip() != "none"
        ):
            drawn["spacing"] = True
    messages = {
        "colour": _("%(commands)s: the source draws no colour"),
        "size": _("%(commands)s: the source draws no size change"),
        "spacing": _("%(commands)s: the source draws no such space"),
    }
    return [
        messages[kind] % {"commands": ", ".join(names)}
        for kind, names in style_commands(latex).items()
        if not drawn[kind]
    ]


# ---------------------------------------------------------------- normal form

# Characters that are drawn alike and mean the same (after NFKC).
_SAME = {
    "\u2212": "-",
    "\u2010": "-",
    "\u2018": "\u2032",
    "\u2019": "\u2032",
    "\u2217": "*",
    "\u00b7": "\u22c5",
    "\u2219": "\u22c5",
    "\u2223": "|",
    "\u2225": "\u2016",
    "\u2329": "\u27e8",
    "\u3008": "\u27e8",
    "\u232a": "\u27e9",
    "\u3009": "\u27e9",
    "'": "\u2032",
    "~": "\u223c",
    "\u2216": "\\",
    "\u29f8": "not",
    "\u27f6": "\u2192",
    "\u27f5": "\u2190",
    "\u27f7": "\u2194",
    "\u27f9": "\u21d2",
    "\u27f8": "\u21d0",
    "\u27fa": "\u21d4",
    "\u27fc": "\u21a6",
    "\u2061": "",
    "\u2062": "",
    "\u2063": "",
    "\u2064": "",
    "\u200b": "",
    "\u200c": "",
    "\u200d": "",
    "\u2060": "",
    "\ufeff": "",
}
_ZERO_LENGTH = re.compile(r"\s*[-+]?(?:0+\.?0*|\.0+)\s*(?:[a-z]{2}|%)?\s*$")
_VARIANT_STYLES = {
    "normal": "",
    "bold": "bf",
    "italic": "it",
    "bold-italic": "bfit",
    "double-struck": "bb",
    "bold-fraktur": "bffrak",
    "script": "scr",
    "bold-script": "scr",
    "fraktur": "frak",
    "sans-serif": "sf",
    "bold-sans-serif": "bfsf",
    "sans-serif-italic": "sfit",
    "sans-serif-bold-italic": "bfsfit",
    "monospace": "tt",
}
_ALNUM_STYLES = (
    "bf",
    "it",
    "bfit",
    "scr",
    "bfscr",
    "frak",
    "bb",
    "bffrak",
    "sf",
    "bfsf",
    "sfit",
    "bfsfit",
    "tt",
)
_LETTERLIKE_STYLES = {
    **dict.fromkeys((0x2102, 0x210D, 0x2115, 0x2119, 0x211A, 0x211D, 0x2124), "bb"),
    **dict.fromkeys(
        (0x210B, 0x2110, 0x2112, 0x211B, 0x212C, 0x2130, 0x2131, 0x2133, 0x212F, 0x210A, 0x2134),
        "scr",
    ),
    **dict.fromkeys((0x210C, 0x2111, 0x211C, 0x2128, 0x212D), "frak"),
    0x210E: "it",
}
_NEGATED = {}
for _cp in list(range(0x2190, 0x2300)) + list(range(0x2A00, 0x2B00)) + [0x3C, 0x3D, 0x3E]:
    _decomposed = unicodedata.normalize("NFD", chr(_cp))
    if len(_decomposed) == 2 and _decomposed[1] == "\u0338":
        _NEGATED[chr(_cp)] = _decomposed[0]
# Accent characters over or under a base, by the command they stand for.
_ACCENTS = {char: commands[0] for char, commands in sym.OVER_ACCENTS.items()}
_UNDER_ACCENTS = dict(sym.UNDER_ACCENTS)
_UNDER_ACCENTS["\u2015"] = "\\underline"
_ACCENTS["\u2015"] = "\\bar"
_SKIPPED = frozenset(
    [
        "mspace",
        "none",
        "annotation",
        "annotation-xml",
        "malignmark",
        "maligngroup",
        "mprescripts",
    ]
)
# latex2mathml leaves escapes and inner text commands in its <mtext>
_TEXT_MARKUP = re.compile(r"\\([{}$&#_%\\])|\\[A-Za-z]+|[{}]")


def _symbol_rewrites() -> re.Pattern:
    """Symbol commands whose character latex2mathml does not know or knows differently."""
    names = []
    for char, name, _as_mi, _as_mo in SYMBOL_COMMANDS:
        code = convert_symbol("\\" + name)
        private = "\ue000" <= char <= "\uf8ff"
        if (
            (code is None or chr(int(code, 16)) != char)
            and char not in LARGEOP_OPERATORS
            and not private
        ):
            names.append(name)
    names.sort(key=len, reverse=True)
    return re.compile(r"\\(" + "|".join(names) + r")(?![A-Za-z])")


_SYMBOL_REWRITE = _symbol_rewrites()
_SYMBOL_CHARACTERS = {name: char for char, name, _as_mi, _as_mo in SYMBOL_COMMANDS}
_LATEX2MATHML_SAME = dict(_SAME)
_TEXT_SCRIPTS = re.compile(
    "[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]$"
)
_LATIN_GREEK = re.compile(
    "[A-Za-z\u0391-\u03a9\u03b1-\u03c9\u03d1\u03d5\u03d6\u03f1\u03f5\u0131\u0237]$"
)
# latex2mathml writes the corners as box-drawing characters
_LATEX2MATHML_SAME.update({"┌": "⌜", "┐": "⌝", "└": "⌞", "┘": "⌟"})
# and some of AMS's small triangles and squares as their large look-alikes
_LATEX2MATHML_SAME.update({"▲": "▴", "▼": "▾", "◀": "◂", "▶": "▸", "■": "◼", "□": "◻"})
_LINE_NOTATIONS = {"top": _ACCENTS["\u2015"] + "(", "bottom": _UNDER_ACCENTS["\u2015"] + "("}
_BRACE_PLACEHOLDERS = {"{": "\ue000", "}": "\ue001"}
_BRACE_PLACEHOLDERS_BACK = str.maketrans({"\ue000": "{", "\ue001": "}"})


def _chars(text: str, out: list[str], same: dict[str, str], style: str = "") -> None:
    """The characters of a token element; letters and digits carry their style."""
    if text.startswith("\\") and len(text) > 1:
        # a command latex2mathml left as it is (\{ after \Big, \arg): the symbol or its name
        code = convert_symbol(text)
        text = chr(int(code, 16)) if code else text[1:]
    for original in text:
        char_style = _alnum_style(ord(original))
        compatible = unicodedata.normalize("NFKC", original)
        if len(compatible) > 1:
            char_style = ""  # ℃, ㎝: one symbol, drawn as it is
        for c in compatible:
            if c.isspace():
                continue
            if c in _NEGATED:
                out.extend(("not", _NEGATED[c]))
                continue
            if c == "\u0338" and out:
                out.insert(len(out) - 1, "not")
                continue
            c = same.get(c, c)
            if c:
                out.append(_styled(c, _combined_style(style, char_style)))


def _combined_style(element: str, character: str | None) -> str:
    """𝑥 in a bold element is bold italic; otherwise the character's own style wins."""
    if character is None:
        return element
    if element.startswith("bf") and character in ("it", "frak", "sf", "sfit"):
        return "bf" + character  # \\boldsymbol{\\mathfrak{a}}: bold fraktur
    return character


def _styled(c: str, style: str) -> str:
    """The token of one character: letters and digits as "x" + STYLE_MARK + style.

    As the judge draws them (shared/tools/judge, lenientChar): only letters and digits
    have a style; digits have no italic form (MathJax slants <mi>2</mi>, browsers do not).
    """
    if not style or not (c.isalpha() or c.isdigit()):
        return c
    if style == "bfscr":
        style = "scr"
    if c.isdigit() or not _LATIN_GREEK.match(c) and not _TEXT_SCRIPTS.match(c):
        # Only Latin and Greek letters have an italic form in MathML Core; MathJax slants
        # the others its fonts hold (ℏ, ð, ℵ), browsers do not, and the judge ignores it.
        # Hangul and CJK are drawn as text, where the slant is real.
        style = {"it": "", "bfit": "bf"}.get(style, style)
    return c + STYLE_MARK + style if style else c


def _alnum_style(cp: int) -> str | None:
    """The style a mathematical alphanumeric character carries in its code point (𝑥: it)."""
    if cp in _LETTERLIKE_STYLES:
        return _LETTERLIKE_STYLES[cp]
    if 0x1D400 <= cp <= 0x1D6A3:
        return _ALNUM_STYLES[(cp - 0x1D400) // 52]
    if 0x1D6A8 <= cp <= 0x1D7C9:
        return ("bf", "it", "bfit", "bfsf", "bfsfit")[(cp - 0x1D6A8) // 58]
    if 0x1D7CE <= cp <= 0x1D7FF:
        return ("bf", "bb", "sf", "bfsf", "tt")[(cp - 0x1D7CE) // 10]
    return None


def _token_style(el: etree._Element, tag: str) -> str:
    """The style a token element draws its letters in: its mathvariant (also from an
    enclosing <mstyle>), the deprecated fontweight/fontstyle, or MathML's default
    (a single-character <mi> is italic, everything else upright)."""
    variant = el.get("mathvariant")
    if variant is None:
        for ancestor in el.iterancestors():
            if local_name(ancestor.tag) in ("mstyle", "math") and ancestor.get("mathvariant"):
                variant = ancestor.get("mathvariant")
                break
    if variant is not None:
        return _VARIANT_STYLES.get(variant.strip(), "")
    text = "".join((el.text or "").split())
    italic = tag == "mi" and len(text) == 1
    if el.get("fontstyle"):
        italic = el.get("fontstyle", "").strip() == "italic"
    bold = el.get("fontweight", "").strip() == "bold"
    return ("bf" if bold else "") + ("it" if italic else "")


def _script_token(el: etree._Element, accents: dict[str, str]) -> str | None:
    """A single accent character as the script of an over/under, as its command."""
    tag = local_name(el.tag)
    while tag in ("mrow", "mstyle") and len(el) == 1:
        el = el[0]
        tag = local_name(el.tag)
    if tag in ("mo", "mi", "mtext") and len(el) == 0:
        text = (el.text or "").strip()
        if len(text) == 1 and text in accents:
            return accents[text]
    return None


def _walk(el: etree._Element, out: list[str], same: dict[str, str]) -> None:
    tag = local_name(el.tag)
    kids = [kid for kid in el if isinstance(kid.tag, str)]
    if tag in ("mi", "mn", "mo"):
        style = _token_style(el, tag)
        text = (el.text or "").strip()
        if same is _LATEX2MATHML_SAME and style == "it" and _TEXT_SCRIPTS.match(text):
            style = ""  # TeX draws a Hangul or CJK character in math mode upright
        _chars(el.text or "", out, same, style)
    elif tag == "ms":
        text = el.get("lquote", "\u201c") + (el.text or "") + el.get("rquote", "\u201d")
        _chars(text, out, same, _token_style(el, tag))
    elif tag == "mtext":
        text = el.text or ""
        if same is _LATEX2MATHML_SAME:
            text = _TEXT_MARKUP.sub(_unescape, text).translate(_BRACE_PLACEHOLDERS_BACK)
            text = text.replace("~", " ")  # TeX's no-break space
        _chars(text, out, same, _token_style(el, tag))
    elif tag in _SKIPPED:
        return
    elif tag == "mfrac" and len(kids) == 2:
        if el.get("bevelled") == "true":
            out.append("^(")
            _walk(kids[0], out, same)
            out.extend((END, "/", "_("))
            _walk(kids[1], out, same)
            out.append(END)
            return
        # without a bar (\\binom, {a \\atop b}) it is a different drawing
        out.append("stack(" if _ZERO_LENGTH.match(el.get("linethickness", "1")) else "frac(")
        _walk(kids[0], out, same)
        out.append(OVER)
        _walk(kids[1], out, same)
        out.append(END)
    elif tag == "msqrt" or (tag == "menclose" and el.get("notation") == "radical"):
        out.append("sqrt(")
        _walk_all(kids, out, same)
        out.append(END)
    elif tag == "mroot" and len(kids) == 2:
        out.append("root(")
        _walk(kids[1], out, same)
        out.append(INDEX)
        _walk(kids[0], out, same)
        out.append(END)
    elif tag in ("msub", "msup", "msubsup") and kids:
        _walk(kids[0], out, same)
        markers = ("^(",) if tag == "msup" else ("_(", "^(")
        for marker, script in zip(markers, kids[1:], strict=False):
            out.append(marker)
            _walk(script, out, same)
            out.append(END)
    elif tag in ("munder", "mover", "munderover") and kids:
        _walk_under_over(tag, kids, out, same)
    elif tag == "mmultiscripts" and kids:
        _walk_multiscripts(kids, out, same)
    elif tag == "mtable":
        # a solid frame is the box that \\boxed draws around the table
        framed = (el.get("frame") or "none").strip() not in ("none", "")
        if framed:
            out.append("enclose(")
        _walk_table(kids, out, same)
        if framed:
            out.append(END)
    elif tag == "mfenced":
        _walk_fenced(el, kids, out, same)
    elif tag == "mphantom":
        return  # not drawn; LaTeX's \\phantom is checked as spacing (commands.py)
    elif tag == "menclose":
        # a lone top or bottom line is drawn as \overline / \underline draws it
        notation = " ".join(el.get("notation", "").split())
        if notation and set(notation.split()) <= {"left", "right"}:
            _walk_all(kids, out, same)  # side lines, as an array's outer column lines draw
            return
        out.append(_LINE_NOTATIONS.get(notation, "enclose("))
        _walk_all(kids, out, same)
        out.append(END)
    elif tag == "semantics":
        if kids:
            _walk(kids[0], out, same)
    else:
        _walk_all(kids, out, same)


def _unescape(match: re.Match) -> str:
    return match.group(1) or ""


def _walk_all(kids: list[etree._Element], out: list[str], same: dict[str, str]) -> None:
    for kid in kids:
        _walk(kid, out, same)


def _walk_under_over(
    tag: str, kids: list[etree._Element], out: list[str], same: dict[str, str]
) -> None:
    """Accents wrap their base (\\hat( x )); other scripts follow it like sub/superscripts."""
    under = kids[1] if tag != "mover" and len(kids) > 1 else None
    over = kids[-1] if tag != "munder" and len(kids) > 1 else None
    tokens: list[str] = []
    _walk(kids[0], tokens, same)
    for script, accents, marker in ((under, _UNDER_ACCENTS, "_("), (over, _ACCENTS, "^(")):
        if script is None:
            continue
        accent = _script_token(script, accents)
        if accent is not None:
            tokens = [accent + "(", *tokens, END]
        else:
            tokens.append(marker)
            _walk(script, tokens, same)
            tokens.append(END)
    out.extend(tokens)


def _walk_multiscripts(kids: list[etree._Element], out: list[str], same: dict[str, str]) -> None:
    post: list[etree._Element] = []
    pre: list[etree._Element] = []
    target = post
    for kid in kids[1:]:
        if local_name(kid.tag) == "mprescripts":
            target = pre
        else:
            target.append(kid)
    for scripts in (pre, None, post):
        if scripts is None:
            _walk(kids[0], out, same)
            continue
        for i, script in enumerate(scripts):
            if local_name(script.tag) == "none":
                continue
            out.append(("_" if i % 2 == 0 else "^") + "(")
            _walk(script, out, same)
            out.append(END)


def _walk_table(rows: list[etree._Element], out: list[str], same: dict[str, str]) -> None:
    """Rows of cells; empty cells at the end of a row and empty rows at the end are dropped
    (LaTeX writes them or not, to the same effect)."""
    table: list[list[list[str]]] = []
    for row in rows:
        cells = (
            [row] if local_name(row.tag) == "mtd" else [c for c in row if isinstance(c.tag, str)]
        )
        tokens = []
        for cell in cells:
            cell_tokens: list[str] = []
            _walk(cell, cell_tokens, same)
            tokens.append(cell_tokens)
        while tokens and not tokens[-1]:
            tokens.pop()
        table.append(tokens)
    while table and not table[-1]:
        table.pop()
    out.append("table(")
    for row_tokens in table:
        out.append("row(")
        for cell_tokens in row_tokens:
            out.extend(("cell(", *cell_tokens, END))
        out.append(END)
    out.append(END)


def _walk_fenced(
    el: etree._Element, kids: list[etree._Element], out: list[str], same: dict[str, str]
) -> None:
    separators = "".join(el.get("separators", ",").split())
    _chars(el.get("open", "("), out, same)
    for i, kid in enumerate(kids):
        if i and separators:
            _chars(separators[min(i - 1, len(separators) - 1)], out, same)
        _walk(kid, out, same)
    _chars(el.get("close", ")"), out, same)


def normal_form(math: etree._Element) -> list[str]:
    """The tokens a formula is compared by: characters and structure markers."""
    out: list[str] = []
    _walk(math, out, _SAME)
    return _without_empty_scripts(out)


# Rewrites for what latex2mathml does not read but MathLive does; they keep every token.
_LATEX_REWRITES = (
    (re.compile(r"\\begin\{aligned\}\s*\[[tcb]\]"), r"\\begin{aligned}"),
    (re.compile(r"\\\\\[[^\]]*\]"), r"\\\\"),
    (re.compile(r"\\(begin|end)\{(aligned|gathered|split|align\*?|gather\*?)\}"), r"\\\1{matrix}"),
    (re.compile(r"\\(begin|end)\{dcases\}"), r"\\\1{cases}"),
    (re.compile(r"\\begin\{rcases\}"), r"\\left.\\begin{matrix}"),
    (re.compile(r"\\end\{rcases\}"), r"\\end{matrix}\\right\\}"),
    (re.compile(r"(\\[bx]?cancel|\\enclose\{[^{}]*\})\[[^\]]*\]"), r"\1"),
    (re.compile(r"\\enclose\{\s*top\s*\}"), r"\\overline"),
    (re.compile(r"\\enclose\{\s*bottom\s*\}"), r"\\underline"),
    (re.compile(r"\\enclose\{\s*(?:left|right)(?:\s+(?:left|right))?\s*\}"), ""),
    (re.compile(r"\\enclose\{[^{}]*\}"), r"\\boxed"),
    # latex2mathml drops a whole table whose row ends in an empty cell
    (re.compile(r"(?<!\\)&(\s*)(?=\\\\|\\end\{)"), r"&{}\1"),
    (re.compile(r"\\(begin|end)\{(?:eqnarray|multline)\*?\}"), r"\\\1{matrix}"),
    (re.compile(r"\\begin\{([pbBvV]?matrix|smallmatrix)\*\}(?:\[[lcr]\])?"), r"\\begin{\1}"),
    (re.compile(r"\\end\{([pbBvV]?matrix|smallmatrix)\*\}"), r"\\end{\1}"),
    # an accent over nothing draws the accent character itself: the converter writes a
    # caret outside \text{} so (\unicode{x5E} is forbidden, commands.forbidden_commands)
    (re.compile(r"\\hat\{\s*\}"), r"\\unicode{x5E}"),
    (re.compile(r"\\lparen(?![A-Za-z])"), "("),
    (re.compile(r"\\left<"), r"\\left\\langle "),
    (re.compile(r"\\right>"), r"\\right\\rangle "),
    (re.compile(r"\\(math[a-z]+|boldsymbol) +([A-Za-z0-9])"), r"\\\1{\2}"),
    (re.compile(r"\\circledS(?![A-Za-z])"), r"\\mathrm{Ⓢ}"),
    (re.compile(r"\\doublecap(?![A-Za-z])"), "⋒"),
    (re.compile(r"\\doublecup(?![A-Za-z])"), "⋓"),
    # mathtools' colon relations, as the characters they are built of
    (re.compile(r"\\dblcolon(?![A-Za-z])"), "::"),
    (re.compile(r"\\colon(approx|sim)(?![A-Za-z])"), r":\\\1"),
    (re.compile(r"\\Colon(approx|sim)(?![A-Za-z])"), r"::\\\1"),
    (re.compile(r"\\rparen(?![A-Za-z])"), ")"),
    # inline math inside text: \text{if $x>1$} is \text{if }x>1
    (re.compile(r"\$([^$]*)\$(?=[^{}]*\})"), r"}\1\\text{"),
    (re.compile(r"\\omicron(?![A-Za-z])"), "ο"),
    (re.compile(r"\\(?:math)?[lr]lap(?:\[[^\]]*\])?(?![A-Za-z])"), ""),
    (re.compile(r"\\cfrac\[[lr]\]"), r"\\cfrac"),
    (re.compile(r"\\bbox\[[^\]]*\]"), ""),
    (re.compile(r"\\rule(?:\[[^\]]*\])?\{[^{}]*\}\{[^{}]*\}"), ""),
    (re.compile(r"\\middle(?![A-Za-z])"), ""),
    # latex2mathml drops the argument of the class commands; the class only sets spacing
    (re.compile(r"\\math(?:rel|bin|open|close|ord|punct|inner)(?![A-Za-z])"), ""),
    # colour models, \cancel and \enclose options: how it is drawn, not what
    (re.compile(r"\\(color|textcolor|colorbox)\[[^\]]*\]\{[^{}]*\}"), r"\\\1{black}"),
    # dashed column lines (c:c) are lines, not content
    (re.compile(r"\\begin\{array\}\{[^{}]*\}"), lambda m: m.group(0).replace(":", "")),
    # latex2mathml reads \operatorname as an empty operator and italic letters; TeX draws
    # its argument upright, as \mathrm does. \mathnormal is TeX's math italic.
    (re.compile(r"\\operatorname\*?(?![A-Za-z])"), r"\\mathrm"),
    (re.compile(r"\\mathnormal(?![A-Za-z])"), r"\\mathit"),
    (re.compile(r"\\(?:no)?limits(?![A-Za-z])"), ""),
    (
        re.compile(
            r"\\text(?:bf|it|sf|tt|rm|up|md|normal)?\{\\text(bf|it|sf|tt|rm|up|md|normal)\{([^{}]*)\}\}"
        ),
        r"\\text\1{\2}",
    ),
)


def _protect_text_braces(latex: str) -> str:
    """\\{ and \\} inside \\text{...}: latex2mathml ends the text at them."""
    out = []
    i = 0
    for match in _TEXT_GROUP.finditer(latex):
        if match.start() < i:
            continue
        start = match.end()
        depth = 1
        j = start
        while j < len(latex) and depth:
            c = latex[j]
            if c == "\\" and j + 1 < len(latex):
                j += 2
                continue
            depth += {"{": 1, "}": -1}.get(c, 0)
            j += 1
        body = latex[start : j - 1]
        for brace, placeholder in _BRACE_PLACEHOLDERS.items():
            body = body.replace("\\" + brace, placeholder)
        out.append(latex[i:start] + body + "}")
        i = j
    out.append(latex[i:])
    return "".join(out)


# latex2mathml writes \mathrm{d} and \Gamma as a bare <mi> with a padded character
# reference, where TeX draws them upright (TeX's capital Greek letters are upright).
_UPRIGHT_MI = re.compile(
    r"<mi>(&#x000(?:4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]);|&#x0039[1-9A-F];|&#x003A[0-9];)</mi>"
)
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textit|textrm|textsf|texttt|mbox)\{")
_MTEXT = re.compile(r"(<mtext\b[^>]*(?<!/)>)(.*?)(</mtext>)", re.DOTALL)
_BARE_AMPERSAND = re.compile(r"&(?!#?[0-9A-Za-z]+;)")


def _escape_mtext(match: re.Match) -> str:
    body = _BARE_AMPERSAND.sub("&amp;", match.group(2)).replace("<", "&lt;")
    return match.group(1) + body + match.group(3)


def latex_normal_form(latex: str) -> list[str]:
    """The normal form of LaTeX, read back into MathML by latex2mathml."""
    latex = readable_by_latex2mathml(latex)
    if not latex.strip():
        return []
    latex = _SYMBOL_REWRITE.sub(lambda m: _SYMBOL_CHARACTERS[m.group(1)], latex)
    for pattern, replacement in _LATEX_REWRITES:
        latex = pattern.sub(replacement, latex)
    if not latex.strip():
        return []  # only spacing or rules (\\rule{2cm}{1cm}), which are checked apart
    latex = _protect_text_braces(latex)
    mathml = _MTEXT.sub(_escape_mtext, latex_to_mathml(latex))
    mathml = _UPRIGHT_MI.sub(r'<mi mathvariant="normal">\1</mi>', mathml)
    out: list[str] = []
    _walk(etree.fromstring(mathml.encode()), out, _LATEX2MATHML_SAME)
    return _without_empty_scripts(out)


def _without_empty_scripts(tokens: list[str]) -> list[str]:
    """An empty sub- or superscript draws nothing (\\overset{\\phantom{x}}{P})."""
    out: list[str] = []
    for tok in tokens:
        if tok == END and out and out[-1] in ("^(", "_("):
            out.pop()
        else:
            out.append(tok)
    return out


def _merge_primes(tokens: list[str]) -> list[str]:
    """f^{′}, f′ and f^{′}^{′} are all primes after f: drop the script markers around them."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "^(":
            j = i + 1
            while j < len(tokens) and tokens[j] == "\u2032":
                j += 1
            if j > i + 1 and j < len(tokens) and tokens[j] == END:
                out.extend(tokens[i + 1 : j])
                i = j + 1
                continue
        out.append(tokens[i])
        i += 1
    return out


def compare(source: list[str], result: list[str]) -> tuple[float, list[str]]:
    """(score, reasons) for two normal forms."""
    if source == result:
        return 1.0, []
    source, result = _merge_primes(source), _merge_primes(result)
    if source == result:
        return 1.0, []
    matcher = difflib.SequenceMatcher(None, source, result, autojunk=False)
    errors = 0
    # A swapped fraction shows as several edits; its own reason says it better.
    swapped = swapped_fractions(source, result)
    reasons = list(swapped)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        errors += max(i2 - i1, j2 - j1)
        if not swapped and len(reasons) < 3:
            reason = describe(op, source, i1, i2, result, j1, j2)
            if reason and reason not in reasons:
                reasons.append(reason)
    if errors and not reasons:
        reasons.append(_("the layout (rows, fractions, scripts) differs from the source"))
    share = 1 - errors / max(len(source), len(result), 1)
    return round(max(0.0, share) * _ERROR_FACTOR**errors, 4), reasons
