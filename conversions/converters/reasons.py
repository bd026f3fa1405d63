"""Reasons a reviewer can read for the differences between two normal forms.

validate.py compares the source MathML and the LaTeX as tok lists (characters with
their style, and structure markers). This module turns the differing stretches into short
sentences that name the symbol and where it sits ("the exponent 2 of x is missing",
"“5” instead of “4” in the denominator", "x is upright where the source draws it
italic"): Messages (messages.py), text in the active language that keeps its message ids
and params, so that a stored reason is shown in each reader's language (Korean in a
Korean browser); the places ("in the denominator") and style names are translated
parts of it, the symbols are kept as they are.
"""

from __future__ import annotations

import unicodedata

from conversions.converters.messages import _

END = "end)"
OVER = ")over("
INDEX = ")index("
STYLE_MARK = "\u0001"
MAX_SYMBOL_CHARS = 24

_FENCES = frozenset("()[]{}|‖⟨⟩⌊⌋⌈⌉")
_PRIME = "\u2032"
# What a structure marker looks like when a stretch of tokens is written out.
_OPEN = {
    "frac(": "(",
    "stack(": "(",
    "sqrt(": "√(",
    "root(": "√[",
    "^(": "^(",
    "_(": "_(",
    "table(": "",
    "row(": "",
    "cell(": "",
    "enclose(": "[",
}
_CLOSE = {
    "stack(": ")",
    "frac(": ")",
    "sqrt(": ")",
    "root(": ")",
    "^(": ")",
    "_(": ")",
    "row(": "; ",
}


def _style_names() -> dict[str, str]:
    return {
        "": _("upright"),
        "it": _("italic"),
        "bf": _("bold"),
        "bfit": _("bold italic"),
        "bb": _("double-struck"),
        "scr": _("script"),
        "frak": _("fraktur"),
        "bffrak": _("bold fraktur"),
        "sf": _("sans-serif"),
        "bfsf": _("bold sans-serif"),
        "sfit": _("sans-serif italic"),
        "bfsfit": _("bold sans-serif italic"),
        "tt": _("monospace"),
    }


def split_style(tok: str) -> tuple[str, str]:
    """("x", "it") for "x\\x01it"; (tok, "") for a tok without a style."""
    char, _mark, style = tok.partition(STYLE_MARK)
    return char, style


def readable(tokens: list[str]) -> str:
    """Tokens written out as a short formula: frac( a )over( b end) -> (a)/(b)."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "not" and i + 1 < len(tokens):
            out.append(unicodedata.normalize("NFC", split_style(tokens[i + 1])[0] + "\u0338"))
            i += 2
            continue
        if tok in _OPEN or (tok.endswith("(") and len(tok) > 1):
            stack.append(tok)
            out.append(_OPEN.get(tok, tok.lstrip("\\")))
        elif tok == END:
            out.append(_CLOSE.get(stack.pop(), ")") if stack else "")
        elif tok == OVER:
            out.append(")/(")
        elif tok == INDEX:
            out.append("]{")
            if stack:
                stack[-1] = "index"
        else:
            out.append(split_style(tok)[0])
        i += 1
    text = "".join(out).strip("; ")
    for short in ("^(", "_("):  # x^(2) -> x^2
        while True:
            at = text.find(short)
            if at < 0 or at + 3 >= len(text) or text[at + 3] != ")":
                break
            text = text[: at + 1] + text[at + 2] + text[at + 4 :]
    if len(text) > MAX_SYMBOL_CHARS:
        text = text[: MAX_SYMBOL_CHARS - 1] + "…"
    return text


def _group_start(tokens: list[str], end: int) -> int:
    """The index of the opener whose END is at tokens[end]."""
    depth = 0
    for i in range(end, -1, -1):
        if tokens[i] == END:
            depth += 1
        elif tokens[i].endswith("(") and len(tokens[i]) > 1 and tokens[i] not in (OVER, INDEX):
            depth -= 1
            if depth == 0:
                return i
    return 0


def _base_before(tokens: list[str], i: int) -> str:
    """The symbol a script at tokens[i] is attached to."""
    j = i - 1
    while j >= 0 and tokens[j] == END and j > 0 and tokens[_group_start(tokens, j)] in ("^(", "_("):
        j = _group_start(tokens, j) - 1  # x_1^2: the base of ^ is x
    if j < 0:
        return "?"
    if tokens[j] == END:
        return readable(tokens[_group_start(tokens, j) : j + 1])
    return readable([tokens[j]])


def _where(tokens: list[str], i: int) -> str:
    """Where tokens[i] sits, as a phrase (" in the denominator"), "" at the top level."""
    depth = 0
    part_seen = False
    for j in range(i - 1, -1, -1):
        tok = tokens[j]
        if tok == END:
            depth += 1
        elif tok in (OVER, INDEX) and depth == 0:
            part_seen = True
        elif tok.endswith("(") and len(tok) > 1 and tok not in (OVER, INDEX):
            if depth:
                depth -= 1
                continue
            return _place(tokens, j, tok, part_seen)
    return ""


def _place(tokens: list[str], j: int, opener: str, second_part: bool) -> str:
    if opener == "frac(":
        return _(" in the denominator") if second_part else _(" in the numerator")
    if opener == "sqrt(":
        return _(" under the square root")
    if opener == "root(":
        return _(" under the root") if second_part else _(" in the index of the root")
    if opener == "^(":
        return _(" in the exponent of %(base)s") % {"base": _base_before(tokens, j)}
    if opener == "_(":
        return _(" in the subscript of %(base)s") % {"base": _base_before(tokens, j)}
    if opener == "cell(":
        row, column = _cell_position(tokens, j)
        return _(" in row %(row)d, column %(column)d") % {"row": row, "column": column}
    return ""


def _cell_position(tokens: list[str], j: int) -> tuple[int, int]:
    depth = 0
    row = column = 1
    for k in range(j - 1, -1, -1):
        tok = tokens[k]
        if tok == END:
            depth += 1
        elif tok.endswith("(") and len(tok) > 1 and tok not in (OVER, INDEX):
            if depth == 1 and tok == "cell(":
                column += 1
            elif depth == 1 and tok == "row(":
                row += 1
            elif depth == 0 and tok == "row(":
                continue
            elif depth == 0 and tok == "table(":
                break
            depth = max(0, depth - 1)
    return row, column


def _whole_script(tokens: list[str]) -> bool:
    return (
        len(tokens) >= 3
        and tokens[0] in ("^(", "_(")
        and tokens[-1] == END
        and _group_start(tokens, len(tokens) - 1) == 0
    )


def _style_change(old: list[str], new: list[str], where: str) -> str | None:
    if len(old) != len(new) or not old:
        return None
    pairs = [(split_style(a), split_style(b)) for a, b in zip(old, new, strict=True)]
    if any(a[0] != b[0] for a, b in pairs) or all(a == b for a, b in pairs):
        return None
    names = _style_names()
    changed = [(a, b) for a, b in pairs if a[1] != b[1]]
    return _("%(symbol)s is %(new)s where the source draws it %(old)s%(where)s") % {
        "where": where,
        "symbol": "".join(a[0] for a, _b in changed)[:MAX_SYMBOL_CHARS],
        "new": names.get(changed[0][1][1], changed[0][1][1]),
        "old": names.get(changed[0][0][1], changed[0][0][1]),
    }


def describe(
    op: str, source: list[str], i1: int, i2: int, result: list[str], j1: int, j2: int
) -> str:
    """One difference (a difflib opcode over the two normal forms) as a sentence."""
    old, new = source[i1:i2], result[j1:j2]
    where = _where(source, i1) if op != "insert" else _where(result, j1)
    if not where and i1 > 0:
        before = [t for t in source[max(0, i1 - 3) : i1] if t not in (END, OVER, INDEX)]
        if before and not any(t.endswith("(") and len(t) > 1 for t in before):
            where = _(" after %(before)s") % {"before": readable(before)}
    if op == "replace" and old in (["^("], ["_("]) and new in (["^("], ["_("]):
        message = (
            _("%(base)s has a subscript where the source has an exponent")
            if old == ["^("]
            else _("%(base)s has an exponent where the source has a subscript")
        )
        return message % {"base": _base_before(source, i1)}
    if op == "replace" and ["sqrt("] in (old, new) and "root(" in old + new:
        return _("a root of another degree%(where)s") % {"where": where}
    if op == "delete" and _whole_script(old):
        message = (
            _("the exponent %(script)s of %(base)s is missing")
            if old[0] == "^("
            else _("the subscript %(script)s of %(base)s is missing")
        )
        return message % {"script": readable(old[1:-1]), "base": _base_before(source, i1)}
    if op == "insert" and _whole_script(new):
        message = (
            _("%(base)s has an exponent %(script)s that the source does not have")
            if new[0] == "^("
            else _("%(base)s has a subscript %(script)s that the source does not have")
        )
        return message % {"script": readable(new[1:-1]), "base": _base_before(result, j1)}
    if op == "delete" and old and all(t == _PRIME for t in old):
        return _("the prime of %(base)s is missing") % {"base": _base_before(source, i1)}
    if op == "insert" and not readable(new):
        return ""
    if op == "delete" and old in (["sqrt("], ["root("]):
        return _("the root sign is missing%(where)s") % {"where": where}
    if op == "insert" and new in (["sqrt("], ["root("]):
        return _("a root sign that the source does not have%(where)s") % {"where": where}
    if op == "delete" and old == ["frac("]:
        return _("the fraction is missing%(where)s") % {"where": where}
    if op == "replace" and sorted(old + new) == ["frac(", "stack("]:
        message = (
            _("the fraction bar is missing%(where)s")
            if old == ["frac("]
            else _("a fraction bar that the source does not draw%(where)s")
        )
        return message % {"where": where}
    if op == "replace":
        style = _style_change(old, new, where)
        if style:
            return style
        if len(old) == len(new) == 1 and old[0] in _FENCES and new[0] in _FENCES:
            return _("the bracket “%(new)s” instead of “%(old)s”%(where)s") % {
                "new": new[0],
                "old": old[0],
                "where": where,
            }
        return _("“%(new)s” instead of “%(old)s”%(where)s") % {
            "new": readable(new),
            "old": readable(old),
            "where": where,
        }
    if op == "delete" and not readable(old):
        return ""
    if op == "delete":
        return _("“%(old)s” is missing%(where)s") % {"old": readable(old), "where": where}
    return _("“%(new)s” that the source does not have%(where)s") % {
        "new": readable(new),
        "where": where,
    }


def swapped_fractions(source: list[str], result: list[str]) -> list[str]:
    """Reasons for fractions whose numerator and denominator changed places."""
    before, after = _fractions(source), _fractions(result)
    reasons: list[str] = []
    for numerator, denominator in before:
        if (
            numerator != denominator
            and (denominator, numerator) in after
            and (numerator, denominator) not in after
        ):
            reasons.append(
                _("the numerator %(numerator)s and the denominator %(denominator)s are swapped")
                % {
                    "numerator": readable(list(numerator)),
                    "denominator": readable(list(denominator)),
                }
            )
    return reasons


def _fractions(tokens: list[str]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    found = []
    for i, tok in enumerate(tokens):
        if tok != "frac(":
            continue
        depth = 0
        over = None
        for j in range(i + 1, len(tokens)):
            t = tokens[j]
            if t == OVER and depth == 0:
                over = j
            elif t == END:
                if depth == 0:
                    if over is not None:
                        found.append((tuple(tokens[i + 1 : over]), tuple(tokens[over + 1 : j])))
                    break
                depth -= 1
            elif t.endswith("(") and len(t) > 1 and t not in (OVER, INDEX):
                depth += 1
    return found
