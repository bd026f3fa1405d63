"""Presentation MathML -> LaTeX that MathLive accepts, by rules.

One function per MathML element, chosen through a dict on the tag. Each returns the
LaTeX of its element; `v` is the mathvariant inherited from <mstyle>/<math>. Anything
that cannot be written faithfully raises ConversionError with the reason, so that a
caller can hand the formula to someone else instead of losing part of it.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections.abc import Callable, Sequence

from lxml import etree

from conversions.converters import content, evidence
from conversions.converters import symbols as sym
from conversions.converters.errors import ConversionError
from conversions.converters.messages import _
from conversions.converters.parse import MATHML_NS, local_name, parse_mathml
from conversions.converters.tables import (
    ACCENT_OPERATORS,
    LARGEOP_OPERATORS,
    MATHLIVE_COMMANDS,
    MOVABLELIMITS_OPERATORS,
)

_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ALNUM = _ASCII_LETTERS | _DIGITS
_OPERATOR_NAME_CHARS = _ASCII_LETTERS | _DIGITS | frozenset(" *-'.:/")
_XML_SPACE = " \t\n\r"
# MathJax ignores the deprecated fontsize/color attributes; so does the converter.
_STYLE_ATTRIBUTES = frozenset({"mathcolor", "mathsize", "mathbackground"})
_TEXT_ESCAPES = {
    "{": "\\{",
    "}": "\\}",
    "$": "\\$",
    "&": "\\&",
    "#": "\\#",
    "_": "\\_",
    "%": "\\%",
}
# Characters \text{} cannot hold in both MathJax and MathLive: written in math mode.
_TEXT_BREAKOUTS = {"\\": "\\backslash", "^": "\\hat{}", "~": "{\\sim}"}
_TEXT_SPECIAL = re.compile("[{}$&#_%\\\\^~\u2061-\u2064\u200b-\u200d\ufeff]")
_CONTENT_MATHML = frozenset(
    [
        "apply",
        "bind",
        "bvar",
        "ci",
        "cn",
        "csymbol",
        "cerror",
        "cbytes",
        "cs",
        "share",
        "piecewise",
        "piece",
        "otherwise",
        "lambda",
        "condition",
        "declare",
        "interval",
        "inverse",
        "sep",
        "plus",
        "minus",
        "times",
        "divide",
        "power",
        "root",
        "eq",
        "set",
        "list",
        "vector",
        "matrix",
        "matrixrow",
    ]
)
# Commands after which a script would not attach to what they draw as a whole.
_NOT_ATOMS = frozenset(
    {"\\overbrace", "\\underbrace", "\\overset", "\\underset", "\\left", "\\sqrt"}
) | frozenset(sym.EXTENSIBLE_ARROWS.values())
_NOT_ATOMS |= frozenset(sym.STRETCHY_ONLY_EXTENSIBLE.values())

Handler = Callable[[etree._Element, "str | None"], str]
Keys = Sequence[str | bytes]  # an element's attribute names, as lxml gives them


def mathml_to_latex(
    mathml: str | bytes, *, max_bytes: int | None = None, max_depth: int | None = None
) -> str:
    """Convert one MathML formula to LaTeX.

    Raises InvalidMathML (a ConversionError) for input that is not acceptable MathML and
    ConversionError for MathML this converter cannot write faithfully, unless the formula
    ships its author's LaTeX (a TeX annotation, MathJax's data-latex) and that LaTeX
    passes every check against the MathML (evidence.py): then that LaTeX is returned.
    """
    math = parse_mathml(mathml, max_bytes=max_bytes, max_depth=max_depth)
    try:
        return element_to_latex(math)
    except ConversionError:
        text = mathml if isinstance(mathml, str) else mathml.decode("utf-8")
        author = evidence.trusted_author_latex(text, math)
        if author is None:
            raise
        return author


def element_to_latex(math: etree._Element) -> str:
    """Convert a <math> element as parse_mathml returns it (no comments or PIs in it)."""
    try:
        latex = _conv(math, None).strip()
        if latex.endswith("\\") and not latex.endswith("\\\\"):
            latex += " "  # the strip took the space of a final "\ "
    except RecursionError:
        raise ConversionError(_("the formula is nested too deeply to convert")) from None
    # An empty formula draws nothing; "{}" says so without being mistaken for no result.
    return latex or "{}"


# ---------------------------------------------------------------- helpers


def _tag(el: etree._Element) -> str:
    """An element's local name (<m:mi>, <mi> and {MathML}mi are all "mi")."""
    tag = el.tag
    return _LOCAL_NAMES.get(tag) or _local(tag)


def _local(tag: str) -> str:
    name = local_name(tag)
    if len(_LOCAL_NAMES) < _MAX_LOCAL_NAMES:  # untrusted input: the cache is bounded
        _LOCAL_NAMES[tag] = name
    return name


_NS = "{" + MATHML_NS + "}"
# Tags as lxml gives them -> local names; filled with the handlers' names below and with
# other tags as they are met.
_LOCAL_NAMES: dict[str, str] = {}
_MAX_LOCAL_NAMES = 10_000


# An element's children: el[:], the same list as list(el) but made without an iterator
# (2-3x faster), through an itemgetter, which adds no Python call either. parse_mathml
# drops comments and processing instructions: children are elements.
_kids: Callable[[etree._Element], list[etree._Element]] = operator.itemgetter(slice(None))


def _conv(el: etree._Element, v: str | None) -> str:
    handler = _HANDLERS.get(el.tag)
    if handler is None:
        if not isinstance(el.tag, str):
            return ""
        name = _tag(el)
        handler = _HANDLERS.get(name)
        if handler is None:
            raise ConversionError(_unsupported(name))
    keys = el.keys()
    # token handlers take the attribute names too, to read only the attributes there are
    latex = handler(el, v, keys) if handler in _KEYED_HANDLERS else handler(el, v)
    if latex and keys and not _STYLE_ATTRIBUTES.isdisjoint(keys):
        latex = _color_and_size(el, latex)
    return latex


def _unsupported(name: str) -> str:
    if name in _CONTENT_MATHML:
        return _("content MathML <%(name)s> is not supported, only presentation MathML") % {
            "name": name
        }
    return _("unsupported element <%(name)s>") % {"name": name}


def _ends_with_control_word(s: str) -> bool:
    i = len(s) - 1
    if i < 1 or s[i] not in _ASCII_LETTERS:
        return False
    while i >= 0 and s[i] in _ASCII_LETTERS:
        i -= 1
    if i < 0 or s[i] != "\\":
        return False
    # "\\abc" is a line break followed by letters, not a command
    backslashes = 0
    while i >= 0 and s[i] == "\\":
        backslashes += 1
        i -= 1
    return backslashes % 2 == 1


def _join(parts: list[str]) -> str:
    """Concatenate LaTeX pieces, with a space where a command would run into a letter."""
    out: list[str] = []
    previous = ""
    for part in parts:
        if not part:
            continue
        first = part[0]
        if (
            previous
            and first in _ALNUM
            and (
                (
                    first in _ASCII_LETTERS
                    and previous[-1] in _ASCII_LETTERS
                    and _ends_with_control_word(previous)
                )
                or (len(previous) > 1 and previous[-2] in "^_")
            )
        ):
            out.append(" ")  # \alpha x, not \alphax; x^2 3, not x^23
        out.append(part)
        previous = part
    return "".join(out)


# Full-width forms (U+FF01-FF5E, what Korean and Japanese input methods type: "２＋３")
# are the ASCII characters drawn wide; fonts for math have no glyphs for them, so MathJax
# falls back to a text font and slants them. They are read as their ASCII characters (their
# Unicode compatibility decomposition), the ideographic space as a space.
_FULL_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULL_WIDTH_RE = re.compile("[\uff01-\uff5e\u3000]")
_FULL_WIDTH_CHARS = {chr(wide): chr(ascii) for wide, ascii in _FULL_WIDTH.items()}


def _text(el: etree._Element) -> str:
    """A token's characters with XML whitespace trimmed and collapsed, as MathML says;
    full-width ASCII forms as ASCII."""
    text = el.text or ""
    if not len(el):
        if len(text) == 1:  # one character: the common case, quickly
            if text < "\x80":
                return "" if text in _XML_SPACE else text
            return _FULL_WIDTH_CHARS.get(text, text)
    else:
        for child in _kids(el):
            if isinstance(child.tag, str):
                name = _tag(child)
                if name == "mglyph":
                    raise ConversionError(_("<mglyph> (an image) cannot be written in LaTeX"))
                if name not in ("malignmark", "maligngroup"):
                    raise ConversionError(
                        _("<%(name)s> inside a token element is not supported") % {"name": name}
                    )
            text += child.tail or ""
    if text and (text[0] in _XML_SPACE or text[-1] in _XML_SPACE or "  " in text or "\n" in text):
        text = " ".join(text.split(None))
    if not text.isascii():
        if not unicodedata.is_normalized("NFC", text) and _has_marks(text):
            text = _composed(text)
        if _FULL_WIDTH_RE.search(text) is not None:
            text = text.translate(_FULL_WIDTH)
    return text


def _composed(text: str) -> str:
    """A letter and the combining marks that follow it as one character where Unicode has
    one (e + U+0301 as é), by NFC on each such cluster only. Characters without marks keep
    their code point: NFC of the whole text would also replace canonical singletons and
    composition exclusions (U+1F71 ά by U+03AC, the Ohm sign by Omega, the Hebrew
    presentation form U+FB30 by alef + dagesh), which draw differently or not at all."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        end = i + 1
        while end < n and unicodedata.combining(text[end]):
            end += 1
        cluster = text[i:end]
        out.append(unicodedata.normalize("NFC", cluster) if end - i > 1 else cluster)
        i = end
    return "".join(out)


def _typed_space(el: etree._Element) -> bool:
    """A token holding only spaces the author typed (HWP writes <mo> </mo> between words)."""
    raw = el.text
    return bool(raw and len(el) == 0 and raw.strip(" \t\u3000") == "" and "\n" not in raw)


def _is_groups(s: str, start: int) -> bool:
    """True when s[start:] is one or more complete {...} groups and nothing else."""
    n = len(s)
    if start >= n or s[start] != "{":
        return False
    depth = 0
    i = start
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and i + 1 < n and s[i + 1] != "{":
                return False
        elif depth == 0:
            return False
        i += 1
    return depth == 0


def _is_atom(s: str) -> bool:
    """Whether a script can follow s directly (x^2, \\alpha^2, \\frac{a}{b}^2)."""
    n = len(s)
    if n == 1:
        return s != "'"
    if s[0] == "{":
        return _is_groups(s, 0) and _matching_brace(s, 0) == n - 1
    if s[0] != "\\":
        return False
    i = 1
    while i < n and s[i] in _ASCII_LETTERS:
        i += 1
    if i == 1:
        return n == 2
    if s[:i] in _NOT_ATOMS:
        return False
    return i == n or _is_groups(s, i)


def _matching_brace(s: str, start: int) -> int:
    depth = 0
    i = start
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _script(s: str) -> str:
    if len(s) == 1 and (s in _ASCII_LETTERS or s in _DIGITS):
        return s
    return "{" + s + "}"


def _length(value: str | None) -> tuple[float, str] | None:
    """A MathML length as (amount, unit), unit one of sym.UNITS (named spaces in em), or
    None when it is not an absolute length (percentages, multiples of the content)."""
    if not value:
        return None
    value = value.strip()
    if value in sym.NAMED_SPACES:
        return sym.NAMED_SPACES[value], "em"
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz%")
    unit = value[len(number) :]
    try:
        amount = float(number)
    except ValueError:
        return None
    if not unit:
        return (amount, "em") if amount == 0 else None
    return (amount, unit) if unit in sym.UNITS else None


def _length_em(value: str | None) -> float | None:
    """A MathML length in em (TeX's units), or None when it is not an absolute length."""
    length = _length(value)
    return None if length is None else length[0] * sym.UNITS[length[1]]


def _dimen(amount: float, unit: str) -> str:
    """A LaTeX dimension in the author's unit: MathJax passes the units of \\rule, \\hspace,
    \\raise and \\lower through to the MathML it draws, so 2cm in LaTeX is drawn as 2cm in
    MathML (MathJax's cm is not TeX's 2.835em); MathLive reads the same units."""
    if unit == "mu":
        amount, unit = amount / 18, "em"
    return f"{round(amount, 3):g}{unit}"


def _dimen_of(value: str | None) -> str | None:
    length = _length(value)
    return None if length is None else _dimen(*length)


def _is_zero(value: str) -> bool:
    """Whether a length (a fraction's linethickness) is zero: 0, 0px, 0em, 0% ..."""
    return _length_em(value) == 0 or value.strip().rstrip("%") in ("0", "0.0")


# ---------------------------------------------------------------- characters and tokens


# _symbol and _ident_char are pure functions of their arguments, called for every token
# character: their results are kept (a bounded memo; the inputs are untrusted).
_MEMO_SIZE = 20_000
_SYMBOLS: dict[str, str] = {}
_IDENT_CHARS: dict[str, str] = {}


def _symbol(c: str) -> str:
    """The LaTeX of one character in upright (operator) context."""
    latex = _SYMBOLS.get(c)
    if latex is None:
        latex = _symbol_of(c)
        if len(_SYMBOLS) < _MEMO_SIZE and len(c) == 1:
            _SYMBOLS[c] = latex
    return latex


def _symbol_of(c: str) -> str:
    command = sym.CHAR_COMMANDS.get(c)
    if command is not None:
        return command
    if c < "\x80":
        if c in sym.ASCII_SPECIALS:
            return sym.ASCII_SPECIALS[c]
        if c in _ASCII_LETTERS:
            return "\\mathrm{" + c + "}"
        return c
    if c == "\u2212":
        return "-"
    if c in sym.INVISIBLE:
        return ""
    if c in sym.SPACES:
        return "\\ "
    if unicodedata.combining(c):
        return _lone_combining_mark(c)
    styled = sym.STYLED_ALPHANUMERICS.get(c)
    if styled is not None:
        return _ident_char(styled[1], styled[0])
    if c in sym.TEXT_ONLY_CHARACTERS or _is_word_script(c):
        return _text_command(c, None)
    if c.isalpha():
        return "\\mathrm{" + c + "}"
    return c


def _has_marks(text: str) -> bool:
    return not text.isascii() and any(unicodedata.combining(c) for c in text)


def _with_marks(text: str, convert: Callable[[str], str]) -> str:
    """Each character converted, a combining mark applied to the character before it."""
    parts: list[str] = []
    bases: list[str] = []  # the characters each part draws, while they are one letter + marks
    for c in text:
        if parts and unicodedata.combining(c):
            parts[-1] = _apply_mark(c, parts[-1], bases[-1])
            bases[-1] += c
        else:
            parts.append(convert(c))
            bases.append(c)
    return _join(parts)


def _apply_mark(mark: str, base: str, chars: str) -> str:
    """`base` (the LaTeX of `chars`) with the combining `mark` over, under or through it."""
    if mark == "\u0338":  # long solidus overlay: a negated relation
        return "\\not" + (" " if base[0] in _ASCII_LETTERS else "") + base
    over = sym.OVER_ACCENTS.get(mark)
    if over is not None:
        return over[0] + "{" + base + "}"
    under = sym.UNDER_ACCENTS.get(mark)
    if under is not None:
        return under + "{" + base + "}"
    if not chars.isascii() and (base == chars or base == "\\text{" + chars + "}"):
        # A letter of a script without LaTeX accents (Hebrew points, Arabic vowel marks)
        # drawn as it is written: the letter and its marks as one text cluster.
        return "\\text{" + chars + mark + "}"
    raise ConversionError(
        _("the combining character %(code)s has no LaTeX equivalent")
        % {"code": f"U+{ord(mark):04X}"}
    )


def _lone_combining_mark(c: str) -> str:
    """A combining mark with nothing to combine with: its accent over an empty base, or,
    where LaTeX has no accent for it, the character itself as text (MathJax fails on a
    bare combining mark in math mode; \\text{} draws it in both MathJax and MathLive)."""
    over = sym.OVER_ACCENTS.get(c)
    if over is not None:
        return over[0] + "{}"
    under = sym.UNDER_ACCENTS.get(c)
    if under is not None:
        return under + "{}"
    return "\\text{" + c + "}"


def _is_word_script(c: str) -> bool:
    """Hangul, CJK and kana: written as text, never as variables."""
    cp = ord(c)
    return (
        0xAC00 <= cp <= 0xD7A3
        or 0x1100 <= cp <= 0x11FF
        or 0x3130 <= cp <= 0x318F
        or 0x3040 <= cp <= 0x30FF
        or 0x3400 <= cp <= 0x9FFF
        or 0xF900 <= cp <= 0xFAFF
    )


def _wrap(latex: str, variant: str) -> str:
    wrapper = sym.VARIANT_WRAPPERS.get(variant)
    if wrapper is None:
        return latex
    return wrapper[0] + latex + wrapper[1]


def _letter(c: str, variant: str) -> str:
    """A Latin letter or digit in a mathvariant."""
    if variant == "italic":
        return c if c in _ASCII_LETTERS else "\\mathit{" + c + "}"
    unicode_char = sym.unicode_styled(variant, c)
    if unicode_char is not None:
        return unicode_char
    return _wrap(c, variant)


def _greek_capital(c: str, variant: str) -> str:
    command = sym.CHAR_COMMANDS.get(c)
    if command is None:  # Alpha, Beta ... look Latin but are their own characters
        return c if variant == "italic" else _wrap(c, variant)
    if variant in ("italic", "bold-italic"):
        var = "var" + command[1:]
        italic = "\\" + var if var in MATHLIVE_COMMANDS else "\\mathit{" + command + "}"
        return italic if variant == "italic" else "\\boldsymbol{" + italic + "}"
    if variant == "normal":
        return command
    return _wrap(command, variant)


def _ident_char(c: str, variant: str) -> str:
    """One character of an identifier drawn in `variant`."""
    key = c + "\0" + variant
    latex = _IDENT_CHARS.get(key)
    if latex is None:
        latex = _ident_char_of(c, variant)
        if len(_IDENT_CHARS) < _MEMO_SIZE and len(variant) < 40:  # (variants are short words)
            _IDENT_CHARS[key] = latex
    return latex


def _ident_char_of(c: str, variant: str) -> str:
    styled = sym.STYLED_ALPHANUMERICS.get(c)
    if styled is not None:
        variant, c = styled
    if c in _ASCII_LETTERS:
        return _letter(c, variant)
    if c in _DIGITS:
        return c if variant in ("italic", "normal") else _letter(c, variant)
    if c in sym.GREEK_LOWER:
        greek = sym.CHAR_COMMANDS.get(c, c)
        if variant == "italic":
            return greek
        if variant == "normal":
            return "\\text{" + c + "}"  # MathJax's TeX fonts have no upright small Greek
        if variant in ("bold", "bold-italic"):
            return "\\boldsymbol{" + greek + "}"
        return _wrap(greek, variant)
    if c in sym.GREEK_UPPER:
        return _greek_capital(c, variant)
    command = sym.CHAR_COMMANDS.get(c)
    if command is None and c.isalpha():
        if _is_word_script(c) or c in sym.TEXT_ONLY_CHARACTERS:
            return _text_command(c, variant)
        if variant == "italic":
            return c  # other letters are italic in math mode, like Latin ones
        return _wrap(c, variant)
    latex = command if command is not None else _symbol(c)
    if variant in ("bold", "bold-italic") and latex:
        return "\\boldsymbol{" + latex + "}"
    return latex


def _styled(text: str, variant: str) -> str:
    """The characters of a token in one mathvariant; letters and digits share a wrapper."""
    if len(text) == 1:
        return _ident_char(text, variant)
    if _has_marks(text):
        return _with_marks(text, lambda c: _ident_char(c, variant))
    if any(_is_word_script(c) for c in text):
        return _text_command(text, variant)
    wrapper = None if variant == "italic" else sym.VARIANT_WRAPPERS.get(variant)
    parts: list[str] = []
    run: list[str] = []
    for c in text:
        if wrapper is not None and (
            c in _ASCII_LETTERS or (run or variant != "normal") and (c in _DIGITS or c == " ")
        ):
            run.append("\\ " if c == " " else c)
            continue
        if run and wrapper is not None:  # a run is only ever started with a wrapper
            parts.append(wrapper[0] + _join(run) + wrapper[1])
            run = []
        parts.append("\\ " if c == " " else _ident_char(c, variant))
    if run and wrapper is not None:
        parts.append(wrapper[0] + _join(run) + wrapper[1])
    return _join(parts)


def _text_command(text: str, variant: str | None) -> str:
    """Text in \\text{} (or \\textbf{} ...), with what text mode cannot hold written as math."""
    opener = sym.TEXT_VARIANT_COMMANDS.get(variant, "\\text{") if variant else "\\text{"
    closer = "}" * opener.count("{")
    if _TEXT_SPECIAL.search(text) is None:
        return opener + text + closer
    parts: list[str] = []
    run: list[str] = []
    for c in text:
        breakout = _TEXT_BREAKOUTS.get(c)
        if breakout is not None:
            if run:
                parts.append(opener + "".join(run) + closer)
                run = []
            parts.append(breakout)
        elif c in sym.INVISIBLE:
            continue
        else:
            run.append(_TEXT_ESCAPES.get(c, c))
    if run:
        parts.append(opener + "".join(run) + closer)
    return _join(parts)


def _variant(el: etree._Element, v: str | None, keys: Keys | None = None) -> str | None:
    """The mathvariant an element draws in (`keys`: its attribute names, if known)."""
    if keys is None:
        keys = el.keys()
    if not keys:
        return v
    # MathJax's own variant (\mathcal, \smallsmile ...) is what it draws with.
    mjx = el.get("data-mjx-variant") if "data-mjx-variant" in keys else None
    if mjx is not None and mjx in sym.VARIANT_WRAPPERS:
        return mjx
    variant = el.get("mathvariant") if "mathvariant" in keys else None
    if variant:
        return variant
    weight = el.get("fontweight") if "fontweight" in keys else None
    style = el.get("fontstyle") if "fontstyle" in keys else None
    if weight is None and style is None:
        return v
    # the MathML 1 attributes, still drawn by MathJax
    bold = weight == "bold" if weight is not None else v in ("bold", "bold-italic")
    italic = style == "italic" if style is not None else v in ("italic", "bold-italic")
    if bold:
        return "bold-italic" if italic else "bold"
    return "italic" if italic else ("normal" if style == "normal" else v)


def _mi(el: etree._Element, v: str | None, keys: Keys | None = None) -> str:
    text = _text(el)
    if v is None and keys is not None and not keys and text in _ASCII_LETTERS:
        return text  # a Latin letter, italic as usual (what _ident_char gives)
    if not text:
        return "\\ " if _typed_space(el) else ""
    variant = _variant(el, v, keys)
    if len(text) == 1:
        return _ident_char(text, variant or "italic")
    if _has_marks(text) and sum(1 for c in text if not unicodedata.combining(c)) == 1:
        return _with_marks(text, lambda c: _ident_char(c, variant or "italic"))
    if variant is None or variant == "normal":
        if text in sym.FUNCTION_NAMES:
            return "\\" + text
        if _OPERATOR_NAME_CHARS.issuperset(text) and not text.isdigit():
            # a word drawn upright, its characters as text: \operatorname keeps both
            return "\\operatorname{" + text.replace(" ", "\\ ") + "}"
    return _styled(text, variant or "normal")


def _mn(el: etree._Element, v: str | None, keys: Keys | None = None) -> str:
    text = _text(el)
    if not text:
        return ""
    variant = _variant(el, v, keys) or "normal"
    if variant == "normal":
        if text.isdigit() and text.isascii():
            return text
        if "," in text:
            # a thousands separator or decimal comma inside one number takes no space
            return "{,}".join(_styled(part, variant) if part else "" for part in text.split(","))
    return _styled(text, variant)


def _mo(el: etree._Element, v: str | None, keys: Keys | None = None) -> str:
    text = _text(el)
    if v is None and keys is not None and not keys and len(text) == 1:
        # no attributes: neither a size, a variant form nor a variant applies
        primes = sym.PRIMES.get(text)
        return "\\prime" * len(primes) if primes is not None else _symbol(text)
    if not text:
        return "\\ " if _typed_space(el) else ""
    variant = _variant(el, v, keys)
    if len(text) == 1:
        if text in sym.PRIMES:
            # A prime in a row (not a superscript of its own) is drawn at the row's size, as
            # \prime is; "'" would be a superscript prime, smaller and raised (x^{a'}).
            return "\\prime" * len(sym.PRIMES[text])
        if text in sym.DELIMITERS and el.get("minsize") is not None:
            big = _big(el) or _stretched_to_minsize(el)
            if big is not None:
                return big + _delimiter(sym.DELIMITERS[text])
        if text in sym.VARIANT_FORMS and (
            variant == "-tex-variant" or el.get("data-mjx-alternate")
        ):
            return sym.VARIANT_FORMS[text]
        if variant and variant != "normal":
            return _ident_char(text, variant)
        return _symbol(text)
    if text in sym.FUNCTION_NAMES:
        return "\\" + text
    if text == "...":
        return "\\ldots"
    if text.isascii() and text.isalpha():
        return "\\operatorname{" + text + "}"
    if el.get("data-mjx-alternate"):
        return _with_marks(text, lambda c: sym.VARIANT_FORMS.get(c) or _symbol(c))
    return _with_marks(text, _symbol)


def _mtext(el: etree._Element, v: str | None, keys: Keys | None = None) -> str:
    text = _text(el)
    if not text:
        return ""
    if text.isspace():
        return "\\ "
    variant = _variant(el, v, keys)
    if variant is None or variant == "normal" or variant in sym.TEXT_VARIANT_COMMANDS:
        return _text_command(text, variant)
    return _styled(text, variant)  # double-struck, fraktur ... exist in math mode only


def _ms(el: etree._Element, v: str | None) -> str:
    # MathJax draws the default quotes curly
    text = el.get("lquote", "\u201c") + _text(el) + el.get("rquote", "\u201d")
    return _text_command(text, _variant(el, v))


# Space commands by the widest width (em) they stand for; spacing is approximate by nature
# and named spaces read better than \hspace{0.2em}.
_SPACES = (
    (0.19, "\\,"),
    (0.25, "\\:"),
    (0.4, "\\;"),
    (0.75, "\\;\\;"),
    (1.5, "\\quad"),
    (2.5, "\\qquad"),
)


def _mspace(el: etree._Element, v: str | None) -> str:
    width = _length_em(el.get("width"))
    if el.get("mathbackground"):
        ink = _ink_box(el, width)
        if ink:
            return ink
    if width is None or abs(width) < 0.05:
        return ""
    length = _length(el.get("width"))
    if length is not None and length[1] not in ("em", "ex", "pt", "mu"):
        return "\\hspace{" + _dimen(*length) + "}"  # an absolute width, in its unit
    if width < 0:
        return "\\!" if width > -0.3 else f"\\hspace{{{round(width, 3):g}em}}"
    for widest, command in _SPACES:
        if width < widest:
            return command
    return f"\\hspace{{{round(width, 3):g}em}}"


def _ink_box(el: etree._Element, width: float | None) -> str:
    """A space with a background colour is a filled box: \\rule (lengths in their units)."""
    width_length = _length(el.get("width"))
    height = _length(el.get("height")) or (0.0, "em")
    depth = _length(el.get("depth")) or (0.0, "em")
    if not width or width <= 0 or width_length is None:
        return ""
    if height[1] != depth[1] and height[0] and depth[0]:
        # different units: added in em
        height = (height[0] * sym.UNITS[height[1]] + depth[0] * sym.UNITS[depth[1]], "em")
    else:
        height = (height[0] + depth[0], height[1] if height[0] else depth[1])
    if height[0] <= 0:
        return ""
    lift = "[" + _dimen(-depth[0], depth[1]) + "]" if depth[0] else ""
    rule = "\\rule" + lift + "{" + _dimen(*width_length) + "}{" + _dimen(*height) + "}"
    color = _color(el.get("mathbackground") or "")
    return rule if color in (None, "black") else "\\textcolor{" + color + "}{" + rule + "}"


# ---------------------------------------------------------------- rows and fences


def _fence_op(el: etree._Element) -> etree._Element | None:
    """The <mo> of a row item, also when wrapped alone in an <mrow> (as MathJax writes)."""
    tag = _tag(el)
    if tag == "mo":
        return el
    if tag == "mrow" and len(el) == 1 and isinstance(el[0].tag, str) and _tag(el[0]) == "mo":
        return el[0]
    return None


def _fence_kind(op: etree._Element, index: int, count: int, text: str) -> str | None:
    """Whether an <mo> (whose _text is `text`) can open or close a \\left...\\right pair:
    "open", "close", "either"."""
    if text not in _FENCE_CANDIDATES:
        return None  # (whatever its attributes say)
    if op.get("stretchy") == "false" or op.get("fence") == "false":
        return None
    if text in sym.OPENING_FENCES:
        return "open"
    if text in sym.CLOSING_FENCES:
        return "close"
    symmetric = text in sym.SYMMETRIC_FENCES or text in sym.VERTICAL_ARROWS
    if not symmetric and not (
        (op.get("fence") == "true" or (text == "" and op.get("stretchy") == "true"))
        and text in sym.DELIMITERS
    ):
        return None
    form = op.get("form") or {"OPEN": "prefix", "CLOSE": "postfix"}.get(
        op.get("data-mjx-texclass") or ""
    )
    if form == "prefix":
        return "open"
    if form == "postfix":
        return "close"
    if symmetric:
        return "either"
    if index == 0:
        return "open"
    return "close" if index == count - 1 else None


def _explicit_fence(op: etree._Element) -> bool:
    return (
        op.get("stretchy") == "true"
        or op.get("fence") == "true"
        or op.get("data-mjx-texclass") in ("OPEN", "CLOSE")
    )


_FENCE_CANDIDATES = (
    sym.OPENING_FENCES
    | sym.CLOSING_FENCES
    | sym.SYMMETRIC_FENCES
    | sym.VERTICAL_ARROWS
    | frozenset(sym.DELIMITERS)
)
_Pair = tuple[int, "etree._Element | None", "etree._Element | None"]
# Operators after which a bar closes, as after an operand: x!|, f'|.
_POSTFIX_OPERATORS = frozenset("!'\u2032\u2033\u2034%\u00b0")


def _row_ops(
    kids: list[etree._Element],
) -> tuple[list[str], list[etree._Element | None], list[str | None]]:
    """For each item of a row: its tag, its <mo> (_fence_op) and that <mo>'s text."""
    tags: list[str] = []
    ops: list[etree._Element | None] = []
    texts: list[str | None] = []
    for kid in kids:  # (one loop: twice as fast as a comprehension of the tags and a zip)
        tag = _LOCAL_NAMES.get(kid.tag) or _local(kid.tag)
        tags.append(tag)
        if tag == "mo":
            ops.append(kid)
            texts.append(_text(kid))
        elif (
            tag == "mrow" and len(kid) == 1 and isinstance(kid[0].tag, str) and _tag(kid[0]) == "mo"
        ):
            op = kid[0]
            ops.append(op)
            texts.append(_text(op))
        else:
            ops.append(None)
            texts.append(None)
    return tags, ops, texts


_INVISIBLE_TAGS = frozenset({"mspace", "maligngroup", "malignmark", "none"})


def _pairs(
    tags: list[str], ops: list[etree._Element | None], texts: list[str | None]
) -> dict[int, _Pair]:
    """Matching fences of one row (as _row_ops gives it): opener index -> (closer index,
    opener <mo>, closer <mo>).

    A stretchy fence without a partner stretches over the rest of the row (or the row so
    far), like \\left( ... \\right. does: its partner is None, at index -1 or len(kids).
    """
    pairs: dict[int, _Pair] = {}
    stack: list[tuple[int, etree._Element, str, str]] = []  # (index, <mo>, kind, text)
    count = len(ops)
    # Whether the item before is an operand (a closed fence included): a symmetric fence
    # after an operand closes, one after an operator or an opener (or first) opens, as
    # TeX's and MathJax's readers infer |x| pairs; so ||x|-1| nests instead of pairing
    # the first two bars.
    after_operand = False
    for i, op in enumerate(ops):
        if op is None:
            if tags[i] not in _INVISIBLE_TAGS:
                after_operand = True
            continue
        text = texts[i] or ""
        kind = _fence_kind(op, i, count, text)
        if kind is None:
            if text:
                after_operand = text in _POSTFIX_OPERATORS
            continue
        if kind == "either":
            top = stack[-1] if stack else None
            if after_operand and top is not None and top[2] == "either" and top[3] == text:
                pairs[top[0]] = (i, top[1], op)
                stack.pop()
                after_operand = True
            else:
                stack.append((i, op, kind, text))
                after_operand = False
            continue
        after_operand = kind != "open"
        if kind == "open":
            stack.append((i, op, kind, text))
        else:
            # a symmetric fence left open inside this pair was not a fence
            while stack and stack[-1][2] == "either" and text != stack[-1][3]:
                stack.pop()
            if stack:
                start, opener, _, _ = stack.pop()
                pairs[start] = (i, opener, op)
            elif _explicit_fence(op) and i > 0:
                pairs[-1] = (i, None, op)
    for start, opener, kind, _ in stack:
        if kind == "open" and _explicit_fence(opener) and start < count - 1:
            pairs[start] = (count, opener, None)
            break
    return pairs


def _is_middle(op: etree._Element | None, text: str | None) -> bool:
    """A stretchy delimiter (an item's <mo> and its text) between a \\left and a \\right,
    drawn as tall as they are."""
    if op is None or not text or text not in sym.DELIMITERS:
        return False
    if op.get("stretchy") == "false":
        return False
    return text in sym.VERTICAL_ARROWS or op.get("fence") == "true" or op.get("stretchy") == "true"


def _middle(el: etree._Element) -> str:
    """\\middle and the delimiter of a row item that _is_middle."""
    op = _fence_op(el)
    assert op is not None  # _is_middle(el)
    return "\\middle" + _delimiter(sym.DELIMITERS[_text(op)])


def _row_parts(kids: list[etree._Element], v: str | None, middle: bool = False) -> list[str]:
    if len(kids) < 2:
        if middle and kids:
            op = _fence_op(kids[0])
            text = _text(op) if op is not None else None
            if text is not None and _is_middle(op, text):
                return ["\\middle" + _delimiter(sym.DELIMITERS[text])]
        return [_conv(kids[0], v)] if kids else []
    tags, ops, texts = _row_ops(kids)
    # (a row without a possible fence has no pairs)
    pairs = {} if _FENCE_CANDIDATES.isdisjoint(texts) else _pairs(tags, ops, texts)
    parts: list[str] = []
    i = 0
    count = len(kids)
    lone_closer = pairs.get(-1)
    if lone_closer is not None:
        close = lone_closer[0]
        parts.append(_fenced("", texts[close] or "", kids[:close], v))
        i = close + 1
    while i < count:
        kid = kids[i]
        pair = pairs.get(i) if pairs else None
        if pair is not None:
            close, opener, closer = pair
            assert opener is not None  # only the lone closer, at -1, has none (_pairs)
            if closer is None:
                parts.append(_fenced(texts[i] or "", "", kids[i + 1 :], v))
                break
            big = _big(opener)
            if big == _big(closer):  # sized fences of different sizes are two symbols
                parts.append(
                    _fenced(texts[i] or "", texts[close] or "", kids[i + 1 : close], v, big)
                )
                i = close + 1
                continue
        if i == count - 2 and tags[i + 1] == "mtable" and texts[i] == "{":
            # an open brace before a table, with no closer: cases
            parts.append(_fenced("{", "", kids[i + 1 :], v))
            break
        text = texts[i]
        if middle and text is not None and _is_middle(ops[i], text):
            parts.append("\\middle" + _delimiter(sym.DELIMITERS[text]))
            i += 1
            continue
        tag = tags[i]
        if tag == "mi" or tag == "mo":
            raw = kid.text  # (syllables, angle brackets; an ASCII text starts below U+1100)
            if raw and not raw.isascii() and raw.strip()[:1] >= "\u1100":
                if i + 1 < count and _is_syllable(kid) and _is_syllable(kids[i + 1]):
                    # Word writes a Korean word one syllable per <mi>: the word as one text
                    end = i + 2
                    while end < count and _is_syllable(kids[end]):
                        end += 1
                    parts.append(_text_command("".join(_text(k) for k in kids[i:end]), None))
                    i = end
                    continue
                if raw.strip() in _CJK_ANGLES and tag == "mo" and _is_relation_angle(kids, i):
                    parts.append(_CJK_ANGLES[_text(kid)])
                    i += 1
                    continue
            elif v is None and raw is not None and len(raw) == 1 and not kid.keys():
                # An attribute-free one-character <mi> or <mo> (most of a row), written here
                # as _mi's and _mo's own fast paths would write it.
                if tag == "mo":
                    text = texts[i] or ""
                    if len(text) == 1:
                        primes = sym.PRIMES.get(text)
                        parts.append(
                            "\\prime" * len(primes) if primes is not None else _symbol(text)
                        )
                        i += 1
                        continue
                elif raw in _ASCII_LETTERS and not len(kid):  # (what _text(kid) gives)
                    parts.append(raw)
                    i += 1
                    continue
        parts.append(_conv(kid, v))
        i += 1
    return parts


def _is_syllable(el: etree._Element) -> bool:
    """An <mi> of Hangul (or CJK) only, without a variant of its own."""
    if _tag(el) != "mi" or el.get("mathvariant"):
        return False
    text = _text(el)
    return bool(text) and all(_is_word_script(c) for c in text)


# HWP's equation editor writes the relations < and > as the CJK angle brackets 〈 〉 (U+3008,
# U+3009; U+2329, U+232A in older exports). Rule: such a bracket that has no partner in its
# row and stands between two operands (x 〈 3, 1 〈 x 〈 2) is the relation; one with a partner
# (〈a, b〉) or at either end of the row stays an angle bracket.
_CJK_ANGLES = {"\u3008": "<", "\u2329": "<", "\u3009": ">", "\u232a": ">"}
_CJK_PARTNERS = {
    "\u3008": "\u3009\u232a",
    "\u2329": "\u3009\u232a",
    "\u3009": "\u3008\u2329",
    "\u232a": "\u3008\u2329",
}


def _is_relation_angle(kids: list[etree._Element], i: int) -> bool:
    if i == 0 or i == len(kids) - 1:
        return False
    before = _fence_op(kids[i - 1])
    if before is not None and _text(before) not in sym.CLOSING_FENCES:
        return False  # after an operator or an opener: not between two operands
    text = _text(kids[i])
    partners = _CJK_PARTNERS[text]
    others = kids[i + 1 :] if _CJK_ANGLES[text] == "<" else kids[:i]
    return not any(_tag(k) == "mo" and _text(k) in partners for k in others)


def _row(kids: list[etree._Element], v: str | None) -> str:
    if len(kids) == 1:
        return _conv(kids[0], v)
    return _join(_merge_text(_row_parts(kids, v)))


_PLAIN_TEXT = re.compile(r"\\text\{([^{}\\]*)\}\Z")


def _merge_text(parts: list[str]) -> list[str]:
    """Adjacent plain \\text{} pieces (and a typed space between two) as one \\text{}:
    Word writes a Korean word one syllable per <mi>, HWP a space as <mo> </mo>."""
    if len(parts) < 2 or "".join(parts).count("\\text{") < 2:
        return parts  # nothing to merge: fewer than two parts can start with \\text{
    out: list[str] = []
    for part in parts:
        match = _PLAIN_TEXT.match(part) if out else None
        if match is not None and not unicodedata.combining(match.group(1)[:1] or "a"):
            # (a lone combining mark stays apart: joined, it would combine with the text)
            previous = _PLAIN_TEXT.match(out[-1])
            if previous is not None:
                out[-1] = "\\text{" + previous.group(1) + match.group(1) + "}"
                continue
            if out[-1] == "\\ " and len(out) > 1:
                previous = _PLAIN_TEXT.match(out[-2])
                if previous is not None:
                    out.pop()
                    out[-1] = "\\text{" + previous.group(1) + " " + match.group(1) + "}"
                    continue
        out.append(part)
    return out


_BIG_SIZES = ((1.2, "\\big"), (1.623, "\\Big"), (2.047, "\\bigg"), (2.470, "\\Bigg"))


def _big(op: etree._Element) -> str | None:
    """\\big ... \\Bigg for an <mo> drawn at a fixed size (minsize = maxsize)."""
    size = op.get("minsize")
    if size is None or size != op.get("maxsize"):
        return None
    em = _length_em(size)
    if em is None or em < 1.1:
        return None
    return min(_BIG_SIZES, key=lambda item: abs(item[0] - em))[1]


# What makes a row taller than a line of text, so that a stretchy operator in it grows
# past its minsize.
_TALL = frozenset(
    ["mfrac", "mtable", "msqrt", "mroot", "munder", "mover", "munderover", "menclose", "mfenced"]
)


def _stretched_to_minsize(op: etree._Element) -> str | None:
    """\\big ... \\Bigg for a stretchy <mo minsize="..."> (no maxsize) alone in a row of
    text height: it is drawn at its minsize (MathJax writes amscd's vertical arrows so), and
    the smallest size at least as large keeps that. None in a taller row, where the size
    depends on the row (MathML 4, 3.2.5.8)."""
    if op.get("maxsize") is not None or op.get("stretchy") == "false":
        return None
    em = _length_em(op.get("minsize"))
    row = op.getparent()
    if em is None or em < 1.1 or row is None or _tag(row) not in ("mrow", "mtd", "mstyle"):
        return None
    for other in row.iter():
        if isinstance(other.tag, str) and other is not op and _tag(other) in _TALL:
            return None
    for size, command in _BIG_SIZES:
        if size >= em - 0.05:
            return command
    return _BIG_SIZES[-1][1]


def _fenced(
    open_text: str,
    close_text: str,
    inner: list[etree._Element],
    v: str | None,
    big: str | None = None,
) -> str:
    left = sym.DELIMITERS.get(open_text)
    right = sym.DELIMITERS.get(close_text)
    if left is None or right is None:
        return _join([_symbol_text(open_text), _row(inner, v), _symbol_text(close_text)])
    content = [kid for kid in inner if not _is_invisible(kid)]
    if len(content) == 1:
        only = content[0]
        tag = _tag(only)
        if tag == "mtable":
            return _mtable_in_fences(only, v, left, right)
        if (
            tag == "mfrac"
            and left == "("
            and right == ")"
            and _is_zero(only.get("linethickness") or "1")
        ):
            kids = _kids(only)
            if len(kids) == 2:
                return "\\binom{" + _conv(kids[0], v) + "}{" + _conv(kids[1], v) + "}"
    body = _join(_row_parts(inner, v, middle=big is None))
    if big is not None:
        return _join([big + "l" + _delimiter(left), body, big + "r" + _delimiter(right)])
    return "\\left" + _delimiter(left) + body + "\\right" + _delimiter(right)


def _delimiter(d: str) -> str:
    return d + " " if d[-1] in _ASCII_LETTERS else d


def _symbol_text(text: str) -> str:
    return _with_marks(text, _symbol)


def _is_invisible(el: etree._Element) -> bool:
    tag = _tag(el)
    if tag == "mo":
        text = _text(el)
        return not text or all(c in sym.INVISIBLE for c in text)
    return tag in ("mspace", "maligngroup", "malignmark", "none")


def _mrow(el: etree._Element, v: str | None) -> str:
    text = el.text
    if text and not text.isspace():
        raise ConversionError(
            _("text %(text)r directly inside <%(name)s>") % {"text": text.strip(), "name": _tag(el)}
        )
    kids = _kids(el)
    if len(kids) == 1:  # (_row, one call less: rows of one item are everywhere)
        return _conv(kids[0], v)
    return _join(_merge_text(_row_parts(kids, v)))


def _mfenced(el: etree._Element, v: str | None) -> str:
    kids = _kids(el)
    separators = "".join((el.get("separators", ",")).split())
    parts: list[str] = []
    for i, kid in enumerate(kids):
        if i and separators:
            parts.append(_symbol_text(separators[min(i - 1, len(separators) - 1)]))
        parts.append(_conv(kid, v))
    opener = (el.get("open", "(")).strip()
    closer = (el.get("close", ")")).strip()
    left = sym.DELIMITERS.get(opener)
    right = sym.DELIMITERS.get(closer)
    if left is not None and right is not None and len(kids) == 1:
        return _fenced(opener, closer, kids, v)
    body = _join(parts)
    if left is None or right is None:
        return _join([_symbol_text(opener), body, _symbol_text(closer)])
    return "\\left" + _delimiter(left) + body + "\\right" + _delimiter(right)


# ---------------------------------------------------------------- layout schemata


def _exactly(el: etree._Element, count: int) -> list[etree._Element]:
    kids = _kids(el)
    if len(kids) != count:
        raise ConversionError(
            _("<%(name)s> needs %(count)d children, it has %(found)d")
            % {"name": _tag(el), "count": count, "found": len(kids)}
        )
    return kids


def _mfrac(el: etree._Element, v: str | None) -> str:
    numerator, denominator = _exactly(el, 2)
    num = _conv(numerator, v)
    den = _conv(denominator, v)
    thickness = el.get("linethickness")
    if thickness is not None and _is_zero(thickness):
        return "{" + num + " \\atop " + den + "}"
    if el.get("bevelled") == "true":
        return "{}^{" + num + "}\\!/\\!{}_{" + den + "}"
    return "\\frac{" + num + "}{" + den + "}"


def _msqrt(el: etree._Element, v: str | None) -> str:
    return "\\sqrt{" + _row(_kids(el), v) + "}"


def _mroot(el: etree._Element, v: str | None) -> str:
    base, index = _exactly(el, 2)
    degree = _conv(index, v)
    if not degree:
        return "\\sqrt{" + _conv(base, v) + "}"
    if "]" in degree:
        degree = "{" + degree + "}"
    return "\\sqrt[" + degree + "]{" + _conv(base, v) + "}"


def _base(el: etree._Element, v: str | None) -> str:
    latex = _conv(el, v)
    if not latex:
        return "{}"
    if latex in sym.LIMIT_COMMANDS:
        return latex + "\\nolimits"
    if _is_atom(latex) or (latex.isdigit() and latex.isascii()):
        return latex  # 30^{\circ}: digits in a row draw as one number
    return "{" + latex + "}"


def _primes(el: etree._Element) -> str | None:
    """ "'" * n when a superscript is only prime characters (f', f'')."""
    tag = _tag(el)
    if tag == "mo" or tag == "mi":
        text = _text(el)
        primes = "".join(sym.PRIMES.get(c, "?") for c in text)
        return primes if text and "?" not in primes else None
    if tag == "mrow":
        kids = _kids(el)
        found = [_primes(kid) for kid in kids]
        if kids and all(found):
            return "".join(p for p in found if p)  # all of them
    return None


def _msub(el: etree._Element, v: str | None) -> str:
    base, sub = _exactly(el, 2)
    return _base(base, v) + "_" + _script(_conv(sub, v))


def _msup(el: etree._Element, v: str | None) -> str:
    base, sup = _exactly(el, 2)
    primes = _primes(sup)
    if primes is not None:
        return _base(base, v) + primes
    return _base(base, v) + "^" + _script(_conv(sup, v))


def _msubsup(el: etree._Element, v: str | None) -> str:
    base, sub, sup = _exactly(el, 3)
    latex = _base(base, v) + "_" + _script(_conv(sub, v))
    primes = _primes(sup)
    if primes is not None:
        return latex + primes
    return latex + "^" + _script(_conv(sup, v))


def _embellished_op(el: etree._Element) -> etree._Element | None:
    """The <mo> of an operator, looking through a row that holds only it."""
    tag = _tag(el)
    if tag == "mo":
        return el
    if tag in ("mrow", "mstyle", "mpadded"):
        kids = [kid for kid in _kids(el) if not _is_invisible(kid)]
        if len(kids) == 1:
            return _embellished_op(kids[0])
    return None


def _limits_operator(el: etree._Element, v: str | None) -> str | None:
    """For a base that TeX draws as a large operator: its LaTeX with \\limits if needed."""
    op = _embellished_op(el)
    if op is not None:
        text = _text(op)
        if text in LARGEOP_OPERATORS:
            latex = _conv(el, v)
            limits = op.get("movablelimits")
            movable = text in MOVABLELIMITS_OPERATORS if limits is None else limits == "true"
            if latex in sym.LIMIT_COMMANDS:
                return latex if movable else latex + "\\limits"
            return latex + "\\limits" if not movable else None
        if text in sym.FUNCTION_NAMES:
            movable = op.get("movablelimits") == "true"
            return (
                "\\" + text if movable and text in sym.LIMIT_FUNCTIONS else "\\" + text + "\\limits"
            )
    elif _tag(el) == "mi" and _text(el) in sym.FUNCTION_NAMES:
        return "\\" + _text(el) + "\\limits"
    return None


def _accent_char(el: etree._Element) -> str | None:
    op = _embellished_op(el)
    if op is None:
        if _tag(el) == "mi" or _tag(el) == "mtext":
            text = _text(el)
            return text if len(text) == 1 else None
        return None
    text = _text(op)
    return text if len(text) == 1 else None


def _is_single_letter(el: etree._Element) -> bool:
    tag = _tag(el)
    if tag in ("mi", "mn"):
        return len(_text(el)) == 1
    if tag in ("mrow", "mstyle") and len(el) == 1:
        return _is_single_letter(el[0])
    return False


def _accent_command(
    el: etree._Element, base: etree._Element, script: etree._Element, over: bool
) -> str | None:
    """The accent command a script stands for (\\hat, \\overline ...), or None."""
    char = _accent_char(script)
    if char is None:
        return None
    commands = sym.OVER_ACCENTS.get(char) if over else sym.UNDER_ACCENTS.get(char)
    if commands is None:
        return None
    attribute = el.get("accent" if over else "accentunder")
    op = _embellished_op(script)
    if attribute is None and op is not None:
        attribute = op.get("accent")
    if attribute == "false" or (
        attribute is None and char not in ACCENT_OPERATORS and _tag(script) != "mo"
    ):
        return None
    if not over:
        return sym.UNDER_ACCENTS[char]  # = commands, typed as one command
    if char in _ARROW_ACCENTS and (
        el.get("accent") == "true" or op is None or op.get("stretchy") != "false"
    ):
        # MathJax draws this arrow itself (U+2192) at its own height, stretched or not;
        # only a non-stretchy arrow that is an accent by the operator dictionary (what
        # MathJax writes for \vec) is drawn as \vec's lower combining arrow
        return commands[1]
    if op is not None and op.get("stretchy") == "false":
        return commands[0]  # a fixed-size accent (LibreOffice's bar) over any base
    return commands[0] if _is_single_letter(base) else commands[1]


_ARROW_ACCENTS = frozenset("\u2192\u27f6")


def _under_over(el: etree._Element, v: str | None, under: bool, over: bool) -> str:
    kids = _exactly(el, 1 + under + over)
    base = kids[0]
    below = kids[1] if under else None
    above = kids[-1] if over else None
    op = _embellished_op(base)
    if op is not None:
        text = _text(op)
        arrow = sym.EXTENSIBLE_ARROWS.get(text)
        if arrow is None and op.get("stretchy") == "true":
            arrow = sym.STRETCHY_ONLY_EXTENSIBLE.get(text)
        if arrow is not None and (
            below is None or sym.UNDER_ACCENTS.get(_accent_char(below) or "") is None
        ):
            below_latex = "[" + _conv(below, v) + "]" if below is not None else ""
            return arrow + below_latex + "{" + (_conv(above, v) if above is not None else "") + "}"
    under_accent = _accent_command(el, base, below, False) if below is not None else None
    over_accent = _accent_command(el, base, above, True) if above is not None else None
    if under_accent is None and over_accent is None:
        operator = _limits_operator(base, v)
        if operator is not None:
            if below is not None:
                operator += "_" + _script(_conv(below, v))
            if above is not None:
                operator += "^" + _script(_conv(above, v))
            return operator
    latex = _conv(base, v)
    if below is not None:
        if under_accent is not None:
            latex = under_accent + "{" + latex + "}"
        else:
            latex = "\\underset{" + _conv(below, v) + "}{" + latex + "}"
    if above is not None:
        if over_accent is not None:
            if below is not None:
                over_accent = sym.OVER_ACCENTS[_accent_char(above) or ""][1]
            latex = over_accent + "{" + latex + "}"
        else:
            latex = "\\overset{" + _conv(above, v) + "}{" + latex + "}"
    return latex


def _munder(el: etree._Element, v: str | None) -> str:
    return _under_over(el, v, True, False)


def _mover(el: etree._Element, v: str | None) -> str:
    return _under_over(el, v, False, True)


def _munderover(el: etree._Element, v: str | None) -> str:
    return _under_over(el, v, True, True)


def _mmultiscripts(el: etree._Element, v: str | None) -> str:
    kids = _kids(el)
    if not kids:
        raise ConversionError(_("<mmultiscripts> without a base"))
    post: list[etree._Element] = []
    pre: list[etree._Element] = []
    target = post
    for kid in kids[1:]:
        if _tag(kid) == "mprescripts":
            target = pre
            continue
        target.append(kid)
    latex = _scripts_pairs(pre, v, "{}") + _base(kids[0], v)
    return latex + _scripts_pairs(post, v, "")


def _scripts_pairs(scripts: list[etree._Element], v: str | None, first_base: str) -> str:
    out: list[str] = []
    for i in range(0, len(scripts), 2):
        sub = _conv(scripts[i], v)
        sup = _conv(scripts[i + 1], v) if i + 1 < len(scripts) else ""
        if not sub and not sup:
            continue
        out.append(first_base if not out else "{}")
        if sub:
            out.append("_" + _script(sub))
        if sup:
            out.append("^" + _script(sup))
    return "".join(out)


def _none(el: etree._Element, v: str | None) -> str:
    return ""


# ---------------------------------------------------------------- tables

_ALIGN_LETTERS = {"left": "l", "center": "c", "right": "r"}


def _spread(value: str | None, count: int, default: str) -> list[str]:
    words = value.split() if value else []
    if not words:
        words = [default]
    # the words in order, the last one repeated (a negative count repeats it no time)
    return words[:count] + [words[-1]] * (count - len(words))


class _Table:
    """The cells of an <mtable> as LaTeX, with the alignment of each column."""

    def __init__(self, el: etree._Element, v: str | None) -> None:
        # What refuses the whole table is found before any cell is converted.
        trs = _kids(el)
        names = [_tag(tr) for tr in trs]
        for name in names:
            if name == "mlabeledtr":
                raise ConversionError(
                    _("equation labels (<mlabeledtr>, \\tag) are not supported by MathLive")
                )
            if name not in ("mtr", "mtd"):
                raise ConversionError(_("<%(name)s> inside <mtable>") % {"name": name})
        _refuse_row_lines(el)
        self.framed = _table_frame(el)
        self.rows: list[list[str]] = []
        cell_aligns: list[list[str | None]] = []
        aligned = False  # whether any cell or row says how it aligns
        for tr, name in zip(trs, names, strict=True):
            cells = [tr] if name == "mtd" else _kids(tr)
            row_aligns = tr.get("columnalign", "").split() if tr.keys() else []
            row: list[str] = []
            aligns: list[str | None] = []
            for i, td in enumerate(cells):
                keys = td.keys()  # (attributes are read only when there are some)
                row.append(_table_cell(td, v, keys))
                if keys or row_aligns:
                    own = td.get("columnalign") if keys else None
                    align = own or (row_aligns[min(i, len(row_aligns) - 1)] if row_aligns else None)
                    aligned = aligned or align is not None
                    aligns.append(align)
                else:
                    aligns.append(None)
            self.rows.append(row)
            cell_aligns.append(aligns)
        # An empty last row (editors leave one after a final Enter) is drawn as a row by
        # MathJax, but a trailing \\\\ is dropped by TeX and MathJax: "{}" keeps the row.
        if len(self.rows) > 1 and self.rows[-1] and not any(self.rows[-1]):
            self.rows[-1][0] = "{}"
        self.width = max((len(row) for row in self.rows), default=0)
        self.aligns = [
            _ALIGN_LETTERS.get(a, "c") for a in _spread(el.get("columnalign"), self.width, "center")
        ]
        for column in range(self.width if aligned else 0):
            # cells of one column that all say how they align override the table
            found = {aligns[column] for aligns in cell_aligns if column < len(aligns)}
            if len(found) == 1 and None not in found:
                self.aligns[column] = _ALIGN_LETTERS.get(found.pop() or "", "c")
        self.lines = _table_lines(el, self.width)
        self.plain = not any(self.lines)
        self.frame_space = _frame_space(el) if self.framed else ""

    def boxed(self, latex: str) -> str:
        """The table's LaTeX inside its frame, if it has one."""
        if not self.framed:
            return latex
        return "\\boxed{" + self.frame_space + latex + self.frame_space + "}"


# The padding (em) MathJax's \boxed leaves between its frame and its content.
_BOXED_PADDING = 0.2


def _frame_space(el: etree._Element) -> str:
    """The space to add inside \\boxed on each side so that the frame stands as far from
    the table as the table's horizontal framespacing says (MathML's default 0.4em; MathJax
    writes .5em for TeX arrays); "" when \\boxed's own padding is close enough."""
    words = (el.get("framespacing") or "").split()
    extra = (_length_em(words[0]) if words else 0.4) or 0.0
    extra -= _BOXED_PADDING
    if extra < 0.05:
        return ""
    for widest, command in _SPACES:
        if extra < widest:
            return command
    return f"\\hspace{{{round(extra, 3):g}em}}"


def _table_frame(el: etree._Element) -> bool:
    """Whether a table has a solid frame: \\boxed draws it (MathLive has no \\hline, and
    MathJax draws both as one rectangle around the table); other frames are refused."""
    frame = (el.get("frame") or "none").strip()
    if frame in ("none", ""):
        return False
    if frame != "solid":
        raise ConversionError(
            _("a table frame drawn %(frame)r is not supported by MathLive") % {"frame": frame}
        )
    return True


def _table_cell(td: etree._Element, v: str | None, keys: Keys) -> str:
    """A cell's LaTeX; `keys` are its attribute names (td.keys())."""
    if _tag(td) != "mtd":
        return _conv(td, v)
    spans = keys and ("columnspan" in keys or "rowspan" in keys)
    if spans and ((td.get("columnspan") or "1") != "1" or (td.get("rowspan") or "1") != "1"):
        raise ConversionError(
            _("table cells spanning rows or columns are not supported by MathLive")
        )
    cell = _mrow(td, v)
    if cell[-1:] in _ASCII_LETTERS and _ends_with_control_word(cell):
        cell += "{}"  # MathLive would read the following \\ as this command's argument
    return cell


def _refuse_row_lines(el: etree._Element) -> None:
    value = el.get("rowlines")
    if value and any(word != "none" for word in value.split()):
        raise ConversionError(_("table rowlines (\\hline) are not supported by MathLive"))


def _table_lines(el: etree._Element, width: int) -> list[str]:
    """The column lines of a table ("|" or "" between columns; row lines are refused)."""
    return [
        "|" if line in ("solid", "dashed") else ""
        for line in _spread(el.get("columnlines"), max(width - 1, 0), "none")
    ]


# The row spacing (em) MathJax gives each environment.
_ENVIRONMENT_ROWSPACING = {"aligned": 0.3, "cases": 0.2, "rcases": 0.2}


def _environment(
    el: etree._Element, name: str, rows: list[list[str]], spec: str = "", option: str = ""
) -> str:
    default = _ENVIRONMENT_ROWSPACING.get(name, 0.4)
    # Without a rowspacing of its own a table takes the environment's usual spacing; a
    # spacing the source sets is kept where the environment's would move rows visibly.
    gaps = _spread(el.get("rowspacing"), max(len(rows) - 1, 0), f"{default}em")
    breaks: dict[str, str] = {}  # gap -> the line break that keeps it (one reading per gap)
    parts = [" & ".join(rows[0])] if rows else []
    for gap, row in zip(gaps, rows[1:], strict=True):
        line_break = breaks.get(gap)
        if line_break is None:
            em = _length_em(gap)
            extra = em - default if em is not None else 0.0
            line_break = f" \\\\[{round(extra, 3):g}em] " if abs(extra) >= 0.1 else " \\\\ "
            breaks[gap] = line_break
        parts.append(line_break)
        parts.append(" & ".join(row))
    argument = ("[" + option + "]" if option else "") + ("{" + spec + "}" if spec else "")
    return "\\begin{" + name + "}" + argument + "".join(parts) + "\\end{" + name + "}"


def _display_cells(el: etree._Element, rows: list[list[str]], env_display: bool) -> None:
    display = el.get("displaystyle") == "true"
    if display == env_display:
        return
    switch = "\\displaystyle " if display else "\\textstyle "
    for row in rows:
        row[:] = [switch + cell if _style_matters(cell) else cell for cell in row]


# Commands whose drawing depends on display or text style (fractions, large operators).
_STYLE_SENSITIVE = (
    "\\frac",
    "\\binom",
    "\\atop",
    "\\sum",
    "\\prod",
    "\\coprod",
    "\\int",
    "\\iint",
    "\\iiint",
    "\\oint",
    "\\lim",
    "\\max",
    "\\min",
    "\\sup",
    "\\inf",
    "\\det",
    "\\gcd",
    "\\Pr",
    "\\big",
    "\\limits",
    "\\begin",
)


def _style_matters(cell: str) -> bool:
    return "\\" in cell and any(command in cell for command in _STYLE_SENSITIVE)


# A table's vertical alignment (its align attribute) that an environment can keep: the
# baseline of its first or last row on the baseline, as TeX's [t] and [b] (MathJax writes
# \\begin{aligned}[b] as align="baseline -1"). MathLive takes the option on aligned only.
_ROW_BASELINES = {"baseline 1": "t", "baseline -1": "b"}


def _mtable(el: etree._Element, v: str | None) -> str:
    table = _Table(el, v)
    rows, aligns = table.rows, table.aligns
    baseline = _ROW_BASELINES.get(" ".join((el.get("align") or "").split()))
    right_left = all(a == ("r" if i % 2 == 0 else "l") for i, a in enumerate(aligns))
    if table.plain and right_left and baseline and len(rows) > 1:
        # (one right-aligned column is an aligned environment too, where [t]/[b] count)
        _display_cells(el, rows, True)
        return table.boxed(_environment(el, "aligned", rows, option=baseline))
    if table.plain and all(a == "c" for a in aligns):
        _display_cells(el, rows, False)
        return table.boxed(_environment(el, "matrix", rows))
    if table.plain and table.width > 1 and right_left:
        _display_cells(el, rows, True)
        return table.boxed(_environment(el, "aligned", rows))
    _display_cells(el, rows, False)
    return table.boxed(_environment(el, "array", rows, _spec(aligns, table.lines)))


def _spec(aligns: list[str], lines: list[str]) -> str:
    spec = aligns[0] if aligns else "c"
    for align, line in zip(aligns[1:], lines, strict=False):
        spec += line + align
    return spec


def _mtable_in_fences(el: etree._Element, v: str | None, left: str, right: str) -> str:
    table = _Table(el, v)
    rows, aligns = table.rows, table.aligns
    _display_cells(el, rows, False)
    # a framed table is boxed inside its fences, which these environments draw themselves
    plain = table.plain and not table.framed
    if plain and left == "\\{" and right == "." and table.width <= 2:
        return _environment(el, "cases", rows)
    if plain and left == "." and right == "\\}" and table.width <= 2:
        return _environment(el, "rcases", rows)
    environment = sym.MATRIX_ENVIRONMENTS.get((left, right))
    if plain and environment is not None and all(a == "c" for a in aligns):
        return _environment(el, environment, rows)
    array = table.boxed(_environment(el, "array", rows, _spec(aligns, table.lines)))
    return "\\left" + _delimiter(left) + array + "\\right" + _delimiter(right)


# ---------------------------------------------------------------- style and wrappers


def _size_command(value: str) -> str | None:
    named = {"small": 0.707, "normal": 1.0, "big": 2.0}
    if value in named:
        scale = named[value]
    elif value.endswith("%"):
        try:
            scale = float(value[:-1]) / 100
        except ValueError:
            return None
    elif value.replace(".", "", 1).isdigit():
        scale = float(value)  # a bare number scales the font (MathML 1)
    else:
        em = _length_em(value)
        if em is None:
            return None
        scale = em
    best = min(sym.SIZE_COMMANDS, key=lambda item: abs(item[0] - scale))
    return best[1]


def _color(value: str) -> str | None:
    value = value.strip()
    if value.lower() in sym.COLOR_NAMES:
        return value.lower()
    if value.startswith("#") and len(value) in (4, 7):
        digits = value[1:]
        if all(c in "0123456789abcdefABCDEF" for c in digits):
            if len(digits) == 3:
                digits = "".join(c * 2 for c in digits)
            return "#" + digits.upper()
    return None


def _color_and_size(el: etree._Element, latex: str) -> str:
    size = el.get("mathsize")
    if size:
        command = _size_command(size.strip())
        if command:
            latex = "{" + command + " " + latex + "}"
    color = el.get("mathcolor")
    if color:
        name = _color(color)
        if name is not None and name != "black":
            latex = "\\textcolor{" + name + "}{" + latex + "}"
    background = el.get("mathbackground")
    if background and _tag(el) != "mspace":
        name = _color(background)
        if name is not None and name != "white":
            latex = "\\bbox[" + name + _bbox_padding(el) + "]{" + latex + "}"
    return latex


def _bbox_padding(el: etree._Element) -> str:
    """ ",5px" when a coloured box pads its content equally on all four sides: an <mpadded>
    (the element or its only child) with height="+P" depth="+P" lspace="P" width="+2P", as
    MathJax writes \\bbox[yellow,5px]{a}; "" otherwise (the colour alone)."""
    pad = el if _tag(el) == "mpadded" else (el[0] if len(el) == 1 else None)
    if pad is None or _tag(pad) != "mpadded" or pad.get("voffset"):
        return ""
    lspace = _length(pad.get("lspace"))
    height = (pad.get("height") or "").strip()
    depth = (pad.get("depth") or "").strip()
    width = (pad.get("width") or "").strip()
    if lspace is None or lspace[0] <= 0 or not (height[:1] == depth[:1] == width[:1] == "+"):
        return ""
    if _length(height[1:]) != lspace or _length(depth[1:]) != lspace:
        return ""
    if _length(width[1:]) != (lspace[0] * 2, lspace[1]):
        return ""
    return "," + _dimen(*lspace)


def _mstyle(el: etree._Element, v: str | None) -> str:
    # the deprecated fontweight/fontstyle count on tokens only (as MathJax draws them)
    body = _row(_kids(el), el.get("mathvariant") or v)
    if not body:
        return ""
    level = el.get("scriptlevel")
    display = el.get("displaystyle")
    if level is not None and level.strip() not in ("0", "+0", "-0"):
        level = level.strip()
        if level.startswith("-"):
            body = "{\\textstyle " + body + "}"
        else:
            steps = int(level.lstrip("+")) if level.lstrip("+").isdigit() else 1
            body = "{" + ("\\scriptstyle " if steps == 1 else "\\scriptscriptstyle ") + body + "}"
    elif display == "true":
        body = "{\\displaystyle " + body + "}"
    elif display == "false" or level is not None:
        body = "{\\textstyle " + body + "}"
    return body


def _mpadded(el: etree._Element, v: str | None) -> str:
    body = _row(_kids(el), v)
    width = (el.get("width") or "").strip()
    fixed = _length(width) if width[:1] not in ("+", "-") else None
    if not body:
        # An empty box of a fixed width (MathJax's \\framebox[2cm]{}) still takes its width.
        if fixed is not None and fixed[0] > 0:
            return "\\hspace{" + _dimen(*fixed) + "}"
        return ""
    offset = _length(el.get("voffset"))
    if offset and offset[0]:
        command = "\\raise" if offset[0] > 0 else "\\lower"
        body = command + "{" + _dimen(abs(offset[0]), offset[1]) + "}{" + body + "}"
    if fixed is not None and fixed[0] > 0 and (el.get("lspace") or "0").strip() in ("0", "0em"):
        # A box of a fixed width (MathJax writes \\framebox[2cm]{x} this way): the content
        # overlaps into a space of that width, so what follows starts where the box ends.
        return "\\mathrlap{" + body + "}\\hspace{" + _dimen(*fixed) + "}"
    if _length_em(el.get("width")) == 0:
        # zero width: the content overlaps its right (rlap) or, moved back, its left (llap)
        lspace = (el.get("lspace") or "0").replace(" ", "")
        if lspace in ("0", "0em", "0pt"):
            return "\\mathrlap{" + body + "}"
        if lspace in ("-1width", "-100%width", "-width"):
            return "\\mathllap{" + body + "}"
    return body


def _mphantom(el: etree._Element, v: str | None) -> str:
    body = _row(_kids(el), v)
    return "\\phantom{" + body + "}" if body else ""


def _menclose(el: etree._Element, v: str | None) -> str:
    body = _row(_kids(el), v)
    notations = sorted(
        {
            sym.ENCLOSE_ALIASES.get(n, n)
            for n in (el.get("notation") or "longdiv").replace(",", " ").split()
        }
    )
    key = " ".join(notations)
    command = sym.MENCLOSE_COMMANDS.get(key)
    if command is not None:
        return command + "{" + body + "}"
    unknown = [n for n in notations if n not in sym.ENCLOSE_NOTATIONS]
    if unknown:
        raise ConversionError(
            _("menclose notation %(notation)r has no LaTeX equivalent")
            % {"notation": " ".join(unknown)}
        )
    return "\\enclose{" + key + "}{" + body + "}"


def _semantics(el: etree._Element, v: str | None) -> str:
    kids = _kids(el)
    if kids and _tag(kids[0]) not in ("annotation", "annotation-xml"):
        # Some editors put several presentation children in one <semantics>: all are drawn.
        shown = [kid for kid in kids if _tag(kid) not in ("annotation", "annotation-xml")]
        return _row(shown, v)
    for kid in kids:
        if _tag(kid) == "annotation-xml" and "presentation" in (kid.get("encoding") or "").lower():
            return _row(_kids(kid), v)
    raise ConversionError(_("<semantics> without presentation MathML"))


def _maction(el: etree._Element, v: str | None) -> str:
    kids = _kids(el)
    if not kids:
        return ""
    selection = el.get("selection") or "1"
    index = int(selection) - 1 if selection.isdigit() else 0
    if el.get("actiontype") != "toggle" or not 0 <= index < len(kids):
        index = 0
    return _conv(kids[index], v)


def _content(el: etree._Element, v: str | None) -> str:
    """Content MathML: the school subset drawn as a textbook would (content.py)."""

    def token(text: str, token_el: etree._Element) -> str:
        return _mn(token_el, v) if _tag(token_el) == "cn" else _mi(token_el, v)

    return content.Writer(token, lambda kid: _conv(kid, v)).latex(el)


def _merror(el: etree._Element, v: str | None) -> str:
    raise ConversionError(_("the MathML contains an error message (<merror>)"))


def _math(el: etree._Element, v: str | None) -> str:
    v = el.get("mathvariant") or v
    top, v = _top_row(el, v)
    kids = _kids(top)
    if any(_is_line_break(kid) for kid in kids):
        return _lines(kids, v)
    return _row(_kids(el), v)


def _top_row(el: etree._Element, v: str | None) -> tuple[etree._Element, str | None]:
    """The row that holds a formula's lines: through lone <mrow>, <mstyle>, <semantics>."""
    top = el
    while len(top) == 1 and isinstance(top[0].tag, str):
        name = _tag(top[0])
        if name not in ("mrow", "mstyle", "semantics"):
            break
        top = top[0]
        if name == "mstyle":
            v = top.get("mathvariant") or v
        elif name == "semantics":
            shown = [kid for kid in top if _tag(kid) not in ("annotation", "annotation-xml")]
            if len(shown) != 1:
                break
            top = shown[0]
    return top, v


def _is_line_break(el: etree._Element) -> bool:
    # (the attribute first: most items have none, and it is cheaper than the tag)
    return el.get("linebreak") in ("newline", "indentingnewline") and _tag(el) in ("mspace", "mo")


def _lines(kids: list[etree._Element], v: str | None) -> str:
    """A formula with forced line breaks (<mspace|mo linebreak="newline">) at its top level:
    left-aligned lines of an aligned environment. MathLive refuses a bare \\\\ outside an
    environment; an <mo> that breaks starts the next line (MathML's linebreakstyle before)."""
    lines: list[list[etree._Element]] = [[]]
    for kid in kids:
        if _is_line_break(kid):
            lines.append([kid] if _tag(kid) == "mo" and _text(kid) else [])
        else:
            lines[-1].append(kid)
    rows = [_row(line, v) for line in lines]
    while len(rows) > 1 and not rows[-1]:
        rows.pop()  # a break after the last content makes no visible line
    while len(rows) > 1 and not rows[0]:
        rows.pop(0)
    if len(rows) == 1:
        return rows[0]
    cells = ["&" + ("\\textstyle " + row if _style_matters(row) else row) for row in rows]
    return "\\begin{aligned}" + " \\\\ ".join(cells) + "\\end{aligned}"


_BY_NAME: dict[str, Handler] = {
    "math": _math,
    "mi": _mi,
    "mn": _mn,
    "mo": _mo,
    "mtext": _mtext,
    "ms": _ms,
    "mspace": _mspace,
    "mrow": _mrow,
    "mfrac": _mfrac,
    "msqrt": _msqrt,
    "mroot": _mroot,
    "mstyle": _mstyle,
    "mpadded": _mpadded,
    "mphantom": _mphantom,
    "merror": _merror,
    "mfenced": _mfenced,
    "menclose": _menclose,
    "msub": _msub,
    "msup": _msup,
    "msubsup": _msubsup,
    "munder": _munder,
    "mover": _mover,
    "munderover": _munderover,
    "mmultiscripts": _mmultiscripts,
    "mtable": _mtable,
    "semantics": _semantics,
    "maction": _maction,
    "none": _none,
    "mprescripts": _none,
    "maligngroup": _none,
    "malignmark": _none,
    "annotation": _none,
    "annotation-xml": _none,
}
_BY_NAME.update({name: _content for name in content.ELEMENTS | content.REFUSED})
_HANDLERS: dict[str, Handler] = {**_BY_NAME, **{_NS + name: h for name, h in _BY_NAME.items()}}
_LOCAL_NAMES.update({tag: local_name(tag) for tag in _HANDLERS})
_KEYED_HANDLERS = frozenset({_mi, _mn, _mo, _mtext})
