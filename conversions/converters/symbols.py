"""Character and name tables: Unicode -> LaTeX commands that MathLive and MathJax both know.

The symbol commands come from tables.py (generated from MathLive and checked against
MathJax's drawing); this module picks one command per character and adds what a table
cannot say: Greek letters, mathvariant styles, accents, function names, fences.
"""

from __future__ import annotations

import unicodedata

from conversions.converters.tables import (
    MATHJAX_REJECTED_CHARACTERS,
    MATHLIVE_COMMANDS,
    MATHLIVE_REJECTED_CHARACTERS,
    SYMBOL_COMMANDS,
)

# Where a character has several commands, the one people write.
_PREFERRED = frozenset(
    {
        "rightarrow",
        "leftarrow",
        "Longrightarrow",
        "Longleftarrow",
        "le",
        "ge",
        "neg",
        "wedge",
        "vee",
        "ni",
        "cdot",
        "emptyset",
        "triangle",
        "mid",
        "parallel",
        "int",
        "sim",
        "approx",
        "propto",
        "setminus",
        "dagger",
        "ddagger",
        "ldots",
        "hbar",
        "models",
        "bowtie",
        "frown",
        "smile",
        "lhd",
        "rhd",
        "unlhd",
        "unrhd",
        "veebar",
        "doteqdot",
        "lll",
        "ggg",
        "leadsto",
        "bigtriangledown",
        "Diamond",
    }
)
_RANK = {"identical": 2, "equivalent": 1}
# Invisible operators and spaces: drawn as nothing or as space, never as a symbol.
INVISIBLE = frozenset("\u2061\u2062\u2063\u2064\u200b\u200c\u200d\ufeff")
SPACES = frozenset(
    " \u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
)


def _char_commands() -> dict[str, str]:
    best: dict[str, tuple] = {}
    for char, name, as_mi, as_mo in SYMBOL_COMMANDS:
        score = max(_RANK.get(as_mi, 0), _RANK.get(as_mo, 0))
        if score == 0 or char in INVISIBLE or char in SPACES:
            continue
        key = (score, name in _PREFERRED, -len(name), name)
        if char not in best or key > best[char]:
            best[char] = key
    return {char: "\\" + key[3] for char, key in best.items()}


# Character -> command for non-ASCII characters (Greek letters included; see below).
CHAR_COMMANDS: dict[str, str] = _char_commands()

# Characters MathLive or MathJax refuse as they are in math mode: written as text.
TEXT_ONLY_CHARACTERS = MATHLIVE_REJECTED_CHARACTERS | MATHJAX_REJECTED_CHARACTERS

# ASCII characters that are special in LaTeX.
ASCII_SPECIALS = {
    "{": "\\{",
    "}": "\\}",
    "#": "\\#",
    "$": "\\$",
    "%": "\\%",
    "&": "\\&",
    "_": "\\_",
    "\\": "\\backslash",
    "^": "\\hat{}",
    "~": "\\sim",
}

PRIMES = {"\u2032": "'", "\u2033": "''", "\u2034": "'''", "'": "'", "\u2057": "''''"}

GREEK_LOWER = frozenset("αβγδεζηθικλμνξοπρστυφχψωϵϑϕϖϱςϰϝ")
GREEK_UPPER = frozenset("ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ")
# mathvariant -> (prefix, suffix) of the LaTeX that applies it.
VARIANT_WRAPPERS = {
    "normal": ("\\mathrm{", "}"),
    "bold": ("\\mathbf{", "}"),
    "italic": ("\\mathit{", "}"),
    "bold-italic": ("\\boldsymbol{", "}"),
    "double-struck": ("\\mathbb{", "}"),
    "script": ("\\mathscr{", "}"),
    "bold-script": ("\\boldsymbol{\\mathscr{", "}}"),
    "fraktur": ("\\mathfrak{", "}"),
    "bold-fraktur": ("\\boldsymbol{\\mathfrak{", "}}"),
    "sans-serif": ("\\mathsf{", "}"),
    "bold-sans-serif": ("\\boldsymbol{\\mathsf{", "}}"),
    "monospace": ("\\mathtt{", "}"),
    "-tex-calligraphic": ("\\mathcal{", "}"),
    "-tex-bold-calligraphic": ("\\boldsymbol{\\mathcal{", "}}"),
    "-tex-mathit": ("\\mathit{", "}"),
    "-tex-variant": ("", ""),
}
# Styles LaTeX cannot apply to a letter: written as the styled Unicode character instead.
_UNICODE_ONLY_VARIANTS = {
    "sans-serif-italic": "SANS-SERIF ITALIC",
    "sans-serif-bold-italic": "SANS-SERIF BOLD ITALIC",
}
# MathJax's "-tex-variant" glyphs: the small or thick forms of some relations.
VARIANT_FORMS = {
    "\u2323": "\\smallsmile",
    "\u2322": "\\smallfrown",
    "\u2223": "\\shortmid",
    "\u2225": "\\shortparallel",
    "\u221d": "\\varpropto",
    "\u2248": "\\thickapprox",
    "\u223c": "\\thicksim",
    "\u2216": "\\smallsetminus",
    "\u2205": "\\varnothing",
}
TEXT_VARIANT_COMMANDS = {
    "bold": "\\textbf{",
    "italic": "\\textit{",
    "bold-italic": "\\textbf{\\textit{",
    "sans-serif": "\\textsf{",
    "monospace": "\\texttt{",
}


def _styled_alphanumerics() -> dict[str, tuple[str, str]]:
    """Mathematical alphanumeric characters (U+1D400.., ℝ, ℬ, ...) -> (mathvariant, base)."""
    styles = {
        "BOLD": "bold",
        "ITALIC": "italic",
        "BOLD ITALIC": "bold-italic",
        "SCRIPT": "script",
        "BOLD SCRIPT": "bold-script",
        "FRAKTUR": "fraktur",
        "BLACK-LETTER": "fraktur",
        "DOUBLE-STRUCK": "double-struck",
        "BOLD FRAKTUR": "bold-fraktur",
        "SANS-SERIF": "sans-serif",
        "SANS-SERIF BOLD": "bold-sans-serif",
        "SANS-SERIF ITALIC": "sans-serif-italic",
        "SANS-SERIF BOLD ITALIC": "sans-serif-bold-italic",
        "MONOSPACE": "monospace",
    }
    table = {}
    codepoints = list(range(0x1D400, 0x1D800)) + list(range(0x2100, 0x2150))
    for cp in codepoints:
        char = chr(cp)
        name = unicodedata.name(char, "")
        base = unicodedata.normalize("NFKC", char)
        if len(base) != 1 or base == char or not base.isalnum() or char in CHAR_COMMANDS:
            continue
        name = name.removeprefix("MATHEMATICAL ")
        for marker in (" CAPITAL ", " SMALL ", " DIGIT ", " NABLA", " PARTIAL"):
            if marker in name:
                style = name.split(marker)[0]
                break
        else:
            continue
        if style in styles:
            table[char] = (styles[style], base)
    table["\u210e"] = ("italic", "h")  # PLANCK CONSTANT
    return table


STYLED_ALPHANUMERICS = _styled_alphanumerics()
_UNICODE_STYLED = {(variant, base): char for char, (variant, base) in STYLED_ALPHANUMERICS.items()}


def unicode_styled(variant: str, char: str) -> str | None:
    """The styled Unicode character for variants LaTeX has no command for, if it exists."""
    if variant not in _UNICODE_ONLY_VARIANTS:
        return None
    return _UNICODE_STYLED.get((variant, char))


# Upright operator names with a command of their own; the second set takes limits
# below/above in display style, like \sum.
FUNCTION_NAMES = frozenset(
    name
    for name in [
        "arccos",
        "arcsin",
        "arctan",
        "arg",
        "cos",
        "cosh",
        "cot",
        "coth",
        "csc",
        "deg",
        "det",
        "dim",
        "exp",
        "gcd",
        "hom",
        "inf",
        "ker",
        "lg",
        "lim",
        "liminf",
        "limsup",
        "ln",
        "log",
        "max",
        "min",
        "Pr",
        "sec",
        "sin",
        "sinh",
        "sup",
        "tan",
        "tanh",
    ]
    if name in MATHLIVE_COMMANDS
)
LIMIT_FUNCTIONS = frozenset(
    ["det", "gcd", "inf", "lim", "liminf", "limsup", "max", "min", "Pr", "sup"]
)
# Large operators whose TeX commands put limits below/above in display style.
LIMIT_COMMANDS = frozenset(
    "\\" + name
    for name in [
        "sum",
        "prod",
        "coprod",
        "bigcap",
        "bigcup",
        "bigvee",
        "bigwedge",
        "bigoplus",
        "bigotimes",
        "bigodot",
        "biguplus",
        "bigsqcup",
    ]
) | frozenset("\\" + name for name in LIMIT_FUNCTIONS)

# Accents over a base: character -> (command for one letter, command for a wider base).
OVER_ACCENTS = {}
for _chars, _narrow, _wide in (
    ("^\u02c6\u0302", "\\hat", "\\widehat"),
    ("~\u02dc\u0303\u223c", "\\tilde", "\\widetilde"),
    ("\u00af\u203e\u0304\u02c9\u0305\u2015\u2014\u2013\u2012\u2212-_", "\\bar", "\\overline"),
    ("\u2192\u20d7\u27f6", "\\vec", "\\overrightarrow"),
    ("\u2190\u20d6\u27f5", "\\overleftarrow", "\\overleftarrow"),
    ("\u2194\u20e1\u27f7", "\\overleftrightarrow", "\\overleftrightarrow"),
    ("\u02d9\u0307", "\\dot", "\\dot"),
    ("\u00a8\u0308", "\\ddot", "\\ddot"),
    ("\u20db", "\\dddot", "\\dddot"),
    ("\u20dc", "\\ddddot", "\\ddddot"),
    ("\u02c7\u030c", "\\check", "\\check"),
    ("\u02d8\u0306", "\\breve", "\\breve"),
    ("\u00b4\u0301", "\\acute", "\\acute"),
    ("`\u0300", "\\grave", "\\grave"),
    ("\u02da\u030a", "\\mathring", "\\mathring"),
    ("\u23de\ufe37", "\\overbrace", "\\overbrace"),
    ("\u23dc", "\\overparen", "\\overparen"),
):
    for _char in _chars:
        OVER_ACCENTS[_char] = (_narrow, _wide)

UNDER_ACCENTS = {}
for _chars, _command in (
    ("_\u00af\u203e\u0332\u2015\u2014\u2013\u2212-", "\\underline"),
    ("\u23df\ufe38", "\\underbrace"),
    ("\u23dd", "\\underparen"),
    ("\u2192\u27f6", "\\underrightarrow"),
    ("\u2190\u27f5", "\\underleftarrow"),
    ("\u2194\u27f7", "\\underleftrightarrow"),
):
    for _char in _chars:
        UNDER_ACCENTS[_char] = _command

# A stretchy arrow with text above/below it.
EXTENSIBLE_ARROWS = {
    "\u2192": "\\xrightarrow",
    "\u27f6": "\\xrightarrow",
    "\u2190": "\\xleftarrow",
    "\u27f5": "\\xleftarrow",
    "\u2194": "\\xleftrightarrow",
    "\u27f7": "\\xleftrightarrow",
    "\u21d2": "\\xRightarrow",
    "\u27f9": "\\xRightarrow",
    "\u21d0": "\\xLeftarrow",
    "\u27f8": "\\xLeftarrow",
    "\u21d4": "\\xLeftrightarrow",
    "\u27fa": "\\xLeftrightarrow",
    "\u21a6": "\\xmapsto",
    "\u27fc": "\\xmapsto",
    "\u21aa": "\\xhookrightarrow",
    "\u21a9": "\\xhookleftarrow",
    "\u21cc": "\\xrightleftharpoons",
    "\u21c0": "\\xrightharpoonup",
    "\u21c1": "\\xrightharpoondown",
    "\u21bc": "\\xleftharpoonup",
    "\u21bd": "\\xleftharpoondown",
    "\u21a0": "\\xtwoheadrightarrow",
    "\u219e": "\\xtwoheadleftarrow",
}
# Operators that are not stretchy by the operator dictionary but stretch under or over a
# script when the source says stretchy="true" (MathJax's extpfeil writes \xlongequal so).
STRETCHY_ONLY_EXTENSIBLE = {"=": "\\xlongequal"}

# Fences: characters that open or close a group, and what \left / \right accept in both
# MathJax and MathLive (MathLive refuses / and \backslash there).
OPENING_FENCES = frozenset("([{\u27e8\u2329\u3008\u230a\u2308\u27e6\u2983\u2987\u27ee")
CLOSING_FENCES = frozenset(")]}\u27e9\u232a\u3009\u230b\u2309\u27e7\u2984\u2988\u27ef")
SYMMETRIC_FENCES = frozenset("|\u2016\u2223\u2225")
# Vertical arrows stretch like fences when they stand in a row.
VERTICAL_ARROWS = frozenset("\u2191\u2193\u2195\u21d1\u21d3\u21d5")
DELIMITERS = {
    "(": "(",
    ")": ")",
    "[": "[",
    "]": "]",
    "{": "\\{",
    "}": "\\}",
    "|": "|",
    "\u2223": "|",
    "\u2016": "\\|",
    "\u2225": "\\|",
    "\u27e8": "\\langle",
    "\u2329": "\\langle",
    "\u3008": "\\langle",
    "\u27e9": "\\rangle",
    "\u232a": "\\rangle",
    "\u3009": "\\rangle",
    "\u230a": "\\lfloor",
    "\u230b": "\\rfloor",
    "\u2308": "\\lceil",
    "\u2309": "\\rceil",
    "\u2191": "\\uparrow",
    "\u2193": "\\downarrow",
    "\u2195": "\\updownarrow",
    "\u21d1": "\\Uparrow",
    "\u21d3": "\\Downarrow",
    "\u21d5": "\\Updownarrow",
    "": ".",
}
# Matrix environments by their fences.
MATRIX_ENVIRONMENTS = {
    ("(", ")"): "pmatrix",
    ("[", "]"): "bmatrix",
    ("\\{", "\\}"): "Bmatrix",
    ("|", "|"): "vmatrix",
    ("\\|", "\\|"): "Vmatrix",
}

# MathJax's TeX sizes (em) of the size commands MathLive knows.
SIZE_COMMANDS = (
    (0.5, "\\tiny"),
    (0.7, "\\scriptsize"),
    (0.8, "\\footnotesize"),
    (0.85, "\\small"),
    (1.0, ""),
    (1.2, "\\large"),
    (1.44, "\\Large"),
    (1.728, "\\LARGE"),
    (2.074, "\\huge"),
    (2.488, "\\Huge"),
)

# The MathML namedspace values in em.
NAMED_SPACES = {
    "veryverythinmathspace": 1 / 18,
    "verythinmathspace": 2 / 18,
    "thinmathspace": 3 / 18,
    "mediummathspace": 4 / 18,
    "thickmathspace": 5 / 18,
    "verythickmathspace": 6 / 18,
    "veryverythickmathspace": 7 / 18,
    "negativeveryverythinmathspace": -1 / 18,
    "negativeverythinmathspace": -2 / 18,
    "negativethinmathspace": -3 / 18,
    "negativemediummathspace": -4 / 18,
    "negativethickmathspace": -5 / 18,
    "negativeverythickmathspace": -6 / 18,
    "negativeveryverythickmathspace": -7 / 18,
}
# Length units in em (1em = 10pt in MathJax's TeX metrics; 1ex = 0.431em).
UNITS = {
    "em": 1.0,
    "ex": 0.431,
    "pt": 0.1,
    "px": 0.0625,
    "pc": 1.2,
    "in": 7.2,
    "cm": 2.835,
    "mm": 0.2835,
    "mu": 1 / 18,
}

# Colours MathJax's color package and MathLive both know by name.
COLOR_NAMES = frozenset(
    [
        "black",
        "blue",
        "brown",
        "cyan",
        "darkgray",
        "gray",
        "green",
        "lightgray",
        "lime",
        "magenta",
        "olive",
        "orange",
        "pink",
        "purple",
        "red",
        "teal",
        "violet",
        "white",
        "yellow",
    ]
)

MENCLOSE_COMMANDS = {
    "box": "\\boxed",
    "updiagonalstrike": "\\cancel",
    "downdiagonalstrike": "\\bcancel",
    "downdiagonalstrike updiagonalstrike": "\\xcancel",
    "radical": "\\sqrt",
}
# MathML 4's compass names for the notations MathJax and MathLive draw (MathLive ignores
# "northeastarrow"; MathJax draws both as the same arrow).
ENCLOSE_ALIASES = {"northeastarrow": "updiagonalarrow"}
# Notations \enclose draws in MathJax and MathLive accepts.
ENCLOSE_NOTATIONS = frozenset(
    [
        "longdiv",
        "actuarial",
        "radical",
        "box",
        "roundedbox",
        "circle",
        "left",
        "right",
        "top",
        "bottom",
        "updiagonalstrike",
        "downdiagonalstrike",
        "verticalstrike",
        "horizontalstrike",
        "madruwb",
        "updiagonalarrow",
        "phasorangle",
    ]
)
