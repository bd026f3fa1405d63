"""Rewrites of LaTeX that latex2mathml misreads into LaTeX it reads, drawing the same.

The validator reads a result back into MathML with latex2mathml. For commands that
latex2mathml does not know or reads differently from TeX (MathJax, MathLive), the LaTeX
is first rewritten here into plain commands with the same drawn content: \\genfrac as a
fraction between delimiters, braket's \\Braket and \\Set as fenced rows, \\overunderset
and \\stackbin as nested scripts, infix \\overwithdelims as a fenced fraction, a script
whose argument is an unbraced \\frac or \\binom in braces. Nothing drawn is removed.
"""

from __future__ import annotations

import re

# Unbraced arguments: a command name, or one character.
_TOKEN = re.compile(r"\\(?:[A-Za-z]+|.)|[^\s{}]")
_BRAKET = {
    "Braket": ("\\left\\langle ", "\\right\\rangle "),
    "braket": ("\\left\\langle ", "\\right\\rangle "),
    "Bra": ("\\left\\langle ", "\\right| "),
    "bra": ("\\left\\langle ", "\\right| "),
    "Ket": ("\\left| ", "\\right\\rangle "),
    "ket": ("\\left| ", "\\right\\rangle "),
    "Set": ("\\left\\{ ", "\\right\\} "),
    "set": ("\\left\\{ ", "\\right\\} "),
}
_ZERO = re.compile(r"\s*[-+]?(?:0+\.?0*|\.0+)\s*(?:[a-z]{2}|%)?\s*$")
_SCRIPTED = frozenset({"frac", "dfrac", "tfrac", "binom", "dbinom", "tbinom"})
_INFIX = re.compile(r"\\(over|atop)withdelims(?![A-Za-z])")


def _argument(latex: str, i: int) -> tuple[str, int] | None:
    """The argument at or after i (without its braces) and where it ends."""
    while i < len(latex) and latex[i] in " \t\n":
        i += 1
    if i >= len(latex):
        return None
    if latex[i] != "{":
        match = _TOKEN.match(latex, i)
        return (match.group(0), match.end()) if match else None
    depth = 0
    j = i
    while j < len(latex):
        c = latex[j]
        if c == "\\":
            j += 2
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth == 0:
            return latex[i + 1 : j], j + 1
        j += 1
    return None


def _arguments(latex: str, i: int, count: int) -> tuple[list[str], int] | None:
    found = []
    for _n in range(count):
        argument = _argument(latex, i)
        if argument is None:
            return None
        found.append(argument[0])
        i = argument[1]
    return found, i


def _delimiter(text: str) -> str:
    text = text.strip()
    return text if text else "."


def _rewrite_command(name: str, latex: str, end: int) -> tuple[str, int] | None:
    """The replacement of the command `name` ending at `end`, and where its arguments end."""
    if name == "genfrac":
        parsed = _arguments(latex, end, 6)
        if parsed is None:
            return None
        (left, right, thickness, _style, top, bottom), after = parsed
        if _ZERO.match(thickness):
            fraction = f"{{{{{top}}}\\atop{{{bottom}}}}}"
        else:
            fraction = f"\\frac{{{top}}}{{{bottom}}}"
        return f"\\left{_delimiter(left)}{fraction}\\right{_delimiter(right)} ", after
    if name in _BRAKET and latex[end : end + 1] == "{":
        parsed = _arguments(latex, end, 1)
        if parsed is None:
            return None
        (body,), after = parsed
        opening, closing = _BRAKET[name]
        return opening + body.replace("\\|", "‖").replace("||", "‖") + closing, after
    if name == "overunderset":
        parsed = _arguments(latex, end, 3)
        if parsed is None:
            return None
        (above, below, base), after = parsed
        return f"\\overset{{{above}}}{{\\underset{{{below}}}{{{base}}}}}", after
    if name == "stackbin":
        parsed = _arguments(latex, end, 2)
        if parsed is None:
            return None
        (above, base), after = parsed
        return f"\\overset{{{above}}}{{{base}}}", after
    return None


def _infix(latex: str) -> str:
    """`a \\overwithdelims [ ] b` in a group -> `\\left[\\frac{a}{b}\\right]`."""
    match = _INFIX.search(latex)
    if match is None:
        return latex
    start = match.start()
    depth = 0
    while start > 0:
        c = latex[start - 1]
        if c == "}" and latex[start - 2 : start - 1] != "\\":
            depth += 1
        elif c == "{" and latex[start - 2 : start - 1] != "\\":
            if depth == 0:
                break
            depth -= 1
        start -= 1
    left = _TOKEN.search(latex, match.end())
    right = _TOKEN.search(latex, left.end()) if left else None
    if left is None or right is None:
        return latex
    end = right.end()
    depth = 0
    while end < len(latex):
        c = latex[end]
        if c == "{" and latex[end - 1] != "\\":
            depth += 1
        elif c == "}" and latex[end - 1] != "\\":
            if depth == 0:
                break
            depth -= 1
        end += 1
    top, bottom = latex[start : match.start()], latex[right.end() : end]
    if match.group(1) == "over":
        stacked = f"\\frac{{{top}}}{{{bottom}}}"
    else:  # \\atopwithdelims draws no bar
        stacked = f"{{{{{top}}}\\atop{{{bottom}}}}}"
    fraction = f"\\left{left.group(0)}{stacked}\\right{right.group(0)}"
    return _infix(latex[:start] + fraction + latex[end:])


def readable_by_latex2mathml(latex: str) -> str:
    """`latex` with the commands latex2mathml misreads rewritten (module docstring)."""
    latex = _infix(latex)
    out = []
    i = 0
    while i < len(latex):
        c = latex[i]
        if c in "^_" and latex.startswith("\\", i + 1):
            match = _TOKEN.match(latex, i + 1)
            assert match is not None  # "\\" itself matches [^\s{}]
            name = match.group(0)[1:]
            if name in _SCRIPTED:
                parsed = _arguments(latex, match.end(), 2)
                if parsed is not None:
                    (top, bottom), after = parsed
                    out.append(f"{c}{{\\{name}{{{top}}}{{{bottom}}}}}")
                    i = after
                    continue
        if c == "\\":
            match = _TOKEN.match(latex, i)
            assert match is not None  # "\\" itself matches [^\s{}]
            rewritten = _rewrite_command(match.group(0)[1:], latex, match.end())
            if rewritten is not None:
                latex = latex[:i] + rewritten[0] + latex[rewritten[1] :]
                continue  # the replacement may hold more of the same
            out.append(match.group(0))
            i = match.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)
