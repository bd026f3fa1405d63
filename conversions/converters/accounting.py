"""No silent loss: does a LaTeX result draw every character its MathML source draws?

`account(mathml, latex)` works on any backend's result (the rules converter, an LLM, a
reviewer's edit): it reads only the two strings. The source's drawn items are the
characters of its token elements (<mi> <mn> <mo> <mtext> <ms>, <ci> <cn>), the fences and
separators of <mfenced>, the symbols of content operators, and its forced line breaks at
the top level; annotations, <mphantom> and the unselected children of <maction> draw
nothing. The result's items are read from the LaTeX by a small tokenizer: characters,
symbol commands (the converter's own table and latex2mathml's), the text of \\text{}, the
letters of function names, accents and \\\\ line breaks. Both sides are normalised the same
way (NFKC, accents and look-alikes in one class: "−" and "-", "〈" and "⟨" and "<", "′" and
"'", combining marks as their accent commands), spaces and invisible operators are left
out, and the two multisets are compared. What the source draws more often than the result
is missing: each such item is a readable reason (in Korean for a Korean reader).

Structure (fractions, roots, scripts, tables) is not accounted for here; the validator
compares it. Extra items in the LaTeX are not a loss and are not reported.
"""

from __future__ import annotations

import collections
import contextlib
import unicodedata
from collections.abc import Iterator
from functools import cache
from typing import cast

from latex2mathml.symbols_parser import convert_symbol
from lxml import etree

from conversions.converters import content
from conversions.converters import symbols as sym
from conversions.converters.errors import InvalidMathML
from conversions.converters.messages import _
from conversions.converters.parse import local_name, parse_mathml

NEWLINE = "\n"
_SKIPPED = frozenset({"annotation", "annotation-xml", "mphantom", "none", "mprescripts"})
_TOKENS = frozenset({"mi", "mn", "mo", "mtext", "ms", "ci", "cn"})
_TEXT_COMMANDS = frozenset(
    [
        "text",
        "textrm",
        "textit",
        "textbf",
        "textsf",
        "texttt",
        "textnormal",
        "textup",
        "mbox",
        "hbox",
        "mathrm",
    ]
)
_DELIMITER_COMMANDS = frozenset(
    [
        "left",
        "right",
        "middle",
        "big",
        "Big",
        "bigg",
        "Bigg",
        "bigl",
        "bigr",
        "Bigl",
        "Bigr",
        "biggl",
        "biggr",
        "Biggl",
        "Biggr",
    ]
)
_ESCAPED = frozenset("{}|#$%&_ ")
# Environments and commands that draw fences of their own.
_ENVIRONMENT_FENCES = {
    "pmatrix": "()",
    "bmatrix": "[]",
    "Bmatrix": "{}",
    "vmatrix": "||",
    "Vmatrix": "\u2016\u2016",
    "cases": "{",
    "dcases": "{",
    "rcases": "}",
}
_COMMAND_FENCES = {"binom": "()", "dbinom": "()", "tbinom": "()"}
# Characters that draw the same thing, or that one producer writes for another's symbol.
_LOOK_ALIKES = (
    "<\u3008\u2329\u27e8",
    ">\u3009\u232a\u27e9",
    "\u2032'",
    "\u22c5\u00b7\u2219",
    "|\u2223",
    "\u2016\u2225",
    "\u2218\u00b0",
    "\u2264\u2a7d",
    "\u2265\u2a7e",
    "*\u2217",
    "\u2205\u2300",
    "\u2216\\",
    ":\u2236",
)


def _classes() -> dict[str, str]:
    """Character or command -> the key of its class (union of look-alikes and accents)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    def join(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    for char, (narrow, wide) in sym.OVER_ACCENTS.items():
        join(char, narrow)
        join(wide, narrow)
    for char, command in sym.UNDER_ACCENTS.items():
        join(char, command)
    for char, command in (sym.EXTENSIBLE_ARROWS | sym.STRETCHY_ONLY_EXTENSIBLE).items():
        join(char, command)
    for group in _LOOK_ALIKES:
        for char in group[1:]:
            join(char, group[0])
    join("\u2212", "-")
    return {x: find(x) for x in list(parent)}


_CLASS = _classes()
_COMMAND_CHARS = {command: char for char, command in sym.VARIANT_FORMS.items()} | {
    command: char for char, command in sym.CHAR_COMMANDS.items()
}


def _items(text: str, out: collections.Counter) -> None:
    """Count the drawn characters of `text` (spaces and invisible characters left out)."""
    for c in unicodedata.normalize("NFKC", text):
        if c.isspace() or c in sym.INVISIBLE or c in sym.SPACES:
            continue
        parts = c if "가" <= c <= "힣" or c.isascii() else unicodedata.normalize("NFD", c)
        for part in parts:
            out[_CLASS.get(part, part)] += 1


# ---------------------------------------------------------------- the MathML side


def source_items(math: etree._Element) -> collections.Counter:
    """What a parsed <math> draws, as a multiset of items."""
    out: collections.Counter = collections.Counter()
    _walk(math, out)
    breaks = _top_line_breaks(math)
    if breaks:
        out[NEWLINE] += breaks
    return out


def _walk(el: etree._Element, out: collections.Counter) -> None:
    name = local_name(el.tag)
    if name in _SKIPPED:
        return
    if name in _TOKENS:
        text = "".join(cast("Iterator[str]", el.itertext()))  # str (lxml-stubs: | bytes)
        if name == "ms":
            text = el.get("lquote", "\u201c") + text + el.get("rquote", "\u201d")
        _items(text, out)
        return
    if name == "maction":
        kids = list(el)
        selection = el.get("selection") or "1"
        index = int(selection) - 1 if selection.isdigit() else 0
        if el.get("actiontype") != "toggle" or not 0 <= index < len(kids):
            index = 0
        if kids:
            _walk(kids[index], out)
        return
    if name == "semantics":
        kids = list(el)
        if kids and local_name(kids[0].tag) in ("annotation", "annotation-xml"):
            for kid in kids:
                if "presentation" in (kid.get("encoding") or "").lower():
                    for inner in kid:
                        _walk(inner, out)
                    return
    if name == "mfenced":
        kids = list(el)
        separators = "".join(el.get("separators", ",").split())
        _items(el.get("open", "(") + el.get("close", ")"), out)
        if separators and len(kids) > 1:
            _items(
                "".join(separators[min(i, len(separators) - 1)] for i in range(len(kids) - 1)), out
            )
    elif name in content.CONSTANTS or name in content.RELATIONS or name in content.SET_OPERATORS:
        _latex_items((content.CONSTANTS | content.RELATIONS | content.SET_OPERATORS)[name], out)
    elif name in ("plus", "minus", "factorial"):
        _items({"plus": "+", "minus": "-", "factorial": "!"}[name], out)
    for kid in el:
        if isinstance(kid.tag, str):
            _walk(kid, out)


def _top_line_breaks(math: etree._Element) -> int:
    """Forced line breaks between lines at the formula's top level (as the converter and
    the judge read them: through lone <mrow>, <mstyle>, <semantics>)."""
    top = math
    while len(top) == 1 and local_name(top[0].tag) in ("mrow", "mstyle", "semantics"):
        top = top[0]
        if local_name(top.tag) == "semantics":
            shown = [k for k in top if local_name(k.tag) not in ("annotation", "annotation-xml")]
            if len(shown) != 1:
                break
            top = shown[0]
    lines = [0]
    for kid in top:
        is_break = local_name(kid.tag) in ("mspace", "mo") and kid.get("linebreak") in (
            "newline",
            "indentingnewline",
        )
        if is_break:
            lines.append(0)
        else:
            lines[-1] += 1
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    while len(lines) > 1 and not lines[0]:
        lines.pop(0)
    return len(lines) - 1


# ---------------------------------------------------------------- the LaTeX side


@cache
def _command_items(name: str) -> str:
    """The characters a LaTeX command draws ("" for structure: \\frac, \\sqrt, \\color ...)."""
    key = "\\" + name
    if key in _CLASS:
        return key
    if key in _COMMAND_CHARS:
        return _COMMAND_CHARS[key]
    if name in sym.FUNCTION_NAMES or name in ("lcm", "mod", "bmod", "pmod"):
        return name
    if name == "not":
        return "\u0338"
    code = convert_symbol(key)
    if code:
        try:
            return chr(int(code, 16))
        except ValueError:
            return ""
    return ""


def _read_group(latex: str, i: int) -> tuple[str, int]:
    """The raw text of the {...} group starting at i (after spaces), and the index after it."""
    n = len(latex)
    while i < n and latex[i] == " ":
        i += 1
    if i >= n or latex[i] != "{":
        return "", i
    depth = 0
    start = i
    while i < n:
        c = latex[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return latex[start + 1 : i], i + 1
        i += 1
    return latex[start + 1 :], n


def _text_items(text: str, out: collections.Counter) -> None:
    """The characters of a \\text{} argument: escapes as their characters, braces dropped."""
    plain = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            if text[i + 1] in _ESCAPED:
                plain.append(text[i + 1])
                i += 2
                continue
            j = i + 1
            while j < len(text) and ("a" <= text[j] <= "z" or "A" <= text[j] <= "Z"):
                j += 1
            _latex_items(text[i:j], out)
            i = j
            continue
        if c not in "{}~":
            plain.append(c)
        i += 1
    _items("".join(plain), out)


def latex_items(latex: str) -> collections.Counter:
    """What a LaTeX formula draws, as a multiset of items comparable with source_items."""
    out: collections.Counter = collections.Counter()
    _latex_items(latex, out)
    return out


def _latex_items(latex: str, out: collections.Counter) -> None:
    i = 0
    n = len(latex)
    while i < n:
        c = latex[i]
        if c == "\\":
            if i + 1 >= n:
                break
            nxt = latex[i + 1]
            if not ("a" <= nxt <= "z" or "A" <= nxt <= "Z"):
                i += 2
                if nxt == "\\":
                    out[NEWLINE] += 1
                    if i < n and latex[i] == "[":
                        end = latex.find("]", i)
                        i = end + 1 if end > 0 else n
                elif nxt in _ESCAPED or nxt == "|":
                    _items("\u2016" if nxt == "|" else nxt, out)
                continue
            j = i + 1
            while j < n and ("a" <= latex[j] <= "z" or "A" <= latex[j] <= "Z"):
                j += 1
            name = latex[i + 1 : j]
            i = j
            if name in _TEXT_COMMANDS and name != "mathrm":
                text, i = _read_group(latex, i)
                _text_items(text, out)
            elif name in ("begin", "end"):
                environment, i = _read_group(latex, i)
                if name == "begin":
                    _items(_ENVIRONMENT_FENCES.get(environment, ""), out)
                    while i < n and latex[i] == " ":
                        i += 1
                    if i < n and latex[i] == "[":  # a position ([t], [b]): not drawn
                        end = latex.find("]", i)
                        i = end + 1 if end > 0 else n
                    if environment in ("array", "subarray"):
                        _, i = _read_group(latex, i)
            elif name == "unicode":
                code, i = _read_group(latex, i)
                with contextlib.suppress(ValueError):
                    _items(chr(int(code.lstrip("xX"), 16)), out)
            elif name in (
                "hspace",
                "rule",
                "color",
                "textcolor",
                "bbox",
                "enclose",
                "raise",
                "lower",
            ):
                _, i = _read_group(latex, i)  # a length, colour or notation: not drawn
            elif name in ("phantom", "hphantom", "vphantom"):
                _, i = _read_group(latex, i)  # takes room, draws nothing
            elif name in _DELIMITER_COMMANDS:
                while i < n and latex[i] == " ":
                    i += 1
                if i < n and latex[i] == ".":
                    i += 1
            elif name in _COMMAND_FENCES:
                _items(_COMMAND_FENCES[name], out)
            else:
                items = _command_items(name)
                if items.startswith("\\"):
                    out[_CLASS.get(items, items)] += 1
                elif items:
                    _items(items, out)
            continue
        if c == "'":
            out[_CLASS["'"]] += 1
        elif c not in "{}^_&~" and not c.isspace():
            _items(c, out)
        i += 1


# ---------------------------------------------------------------- the check


def _describe(item: str) -> str:
    if item == NEWLINE:
        return _("a line break")
    if item.startswith("\\"):
        return _("the symbol %(command)s") % {"command": item}
    return f"'{item}'"


def account(mathml: str, latex: str) -> list[str]:
    """What `mathml` draws that `latex` does not: one reason (a Message, messages.py) per
    missing item, in the order of first appearance; [] when everything is accounted for.

    `mathml` is the untrusted source (parsed with parse_mathml: safe XML and upper-case
    names are read); a source that cannot be read gives one reason saying so.
    """
    try:
        source = source_items(parse_mathml(mathml))
    except InvalidMathML as exc:
        return [
            _("the source MathML cannot be read, so its content was not checked: %(error)s")
            % {"error": exc}
        ]
    result = latex_items(latex or "")
    reasons: list[str] = []
    for item, count in source.items():
        drawn = result.get(item, 0)
        if drawn < count:
            reasons.append(
                _(
                    "%(item)s is missing from the result "
                    "(%(count)d in the source, %(drawn)d in the result)"
                )
                % {"item": _describe(item), "count": count, "drawn": drawn}
            )
    return reasons
