#!/usr/bin/env python
"""Write the producers' dev corpora (tests/producers/<producer>.jsonl).

Each corpus holds school formulas written the way one producer writes MathML, in our own
markup (no file is copied): lines {"id", "producer", "mathml", "reference_latex"}. The
formulas are described once as small trees; one writer per producer turns a tree into
that producer's MathML, following the conventions seen in its public output:

- mathtype: MathType desktop's "MathML 2.0 (namespace attr)" translator: one <mrow> per
  group, <semantics> with a MathType-MTEF annotation, &InvisibleTimes;, &ApplyFunction;,
  <mo> parentheses, mathvariant="normal" for upright letters;
- wiris: MathType web (the Wiris editor): <mfenced> for every bracket pair, &#xB7; for a
  product dot, &#x2212; minus, a LaTeX annotation that may be stale (evidence only:
  used where it passes every check, converters/evidence.py; the stale ones here are not);
- word: Word's OMML2MML.XSL: the mml: prefix with the OMML namespace declared, each
  argument in <mml:mrow>, <mml:mfenced separators="|"> for delimiters, n-ary operators as
  <mml:munderover> with stretchy="false", math italic letters in Cambria Math's
  Mathematical Alphanumeric characters (U+1D44E ...), function names upright;
- hwp: Hancom HWP's equation export: flat rows, <mo> </mo> for the spaces the author typed,
  full-width digits and operators from Korean input, Korean words in <mi>;
- mathjax: MathJax 3/4 assistive MathML: the <mjx-assistive-mml> wrapper, data-mjx-texclass
  on rows and fences, MathJax 4's data-latex (evidence only, as annotations are);
- libreoffice: LibreOffice Math: <semantics> with a StarMath 5.0 annotation, fences as
  <mo fence="true" form="prefix|postfix" stretchy="false">, stretchy="false" operators;
- googledocs: Google Docs equations exported to .docx and read through OMML2MML: like
  Word, but digits one <mml:mn> per run and every operator its own run;
- geogebra: GeoGebra's content MathML (<apply> trees).

The reference LaTeX is written by hand-kept rules here (what a careful author would
type); the judge scores the converter's output against the MathML, not against it.

    .venv/bin/python tests/producers/build.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS = "http://www.w3.org/1998/Math/MathML"

# ---------------------------------------------------------------- formulas as trees
# ("i", "x") identifier, ("n", "12") number, ("o", "+") operator, ("t", "word") text,
# ("r", a, b, ...) row, ("frac", a, b), ("sup", a, b), ("sub", a, b), ("subsup", a, b, c),
# ("sqrt", a), ("root", a, n), ("fence", "(", ")", a), ("fn", "sin", a), ("bar", a),
# ("vec", a), ("nary", "∑", low, high, body), ("cases", [row, ...]), ("matrix", [[...]]),
# ("lim", below, body)


def i(x):
    return ("i", x)


def n(x):
    return ("n", x)


def o(x):
    return ("o", x)


def r(*kids):
    return ("r", *kids)


def frac(a, b):
    return ("frac", a, b)


def sup(a, b):
    return ("sup", a, b)


def sub(a, b):
    return ("sub", a, b)


def paren(*kids, opener="(", closer=")"):
    return ("fence", opener, closer, r(*kids))


FORMULAS = [
    ("linear", r(i("y"), o("="), n("2"), i("x"), o("+"), n("3"))),
    (
        "fraction",
        r(frac(n("3"), n("4")), o("+"), frac(n("1"), n("2")), o("="), frac(n("5"), n("4"))),
    ),
    (
        "quadratic",
        r(i("a"), sup(i("x"), n("2")), o("+"), i("b"), i("x"), o("+"), i("c"), o("="), n("0")),
    ),
    (
        "roots",
        r(
            i("x"),
            o("="),
            frac(
                r(
                    o("-"),
                    i("b"),
                    o("±"),
                    ("sqrt", r(sup(i("b"), n("2")), o("-"), n("4"), i("a"), i("c"))),
                ),
                r(n("2"), i("a")),
            ),
        ),
    ),
    (
        "square",
        r(
            sup(paren(i("a"), o("+"), i("b")), n("2")),
            o("="),
            sup(i("a"), n("2")),
            o("+"),
            n("2"),
            i("a"),
            i("b"),
            o("+"),
            sup(i("b"), n("2")),
        ),
    ),
    ("cuberoot", r(("root", n("8"), n("3")), o("="), n("2"))),
    ("inequality", r(n("1"), o("<"), n("2"), i("x"), o("-"), n("1"), o("≤"), n("5"))),
    ("abs", r(("fence", "|", "|", r(i("x"), o("-"), n("3"))), o("<"), n("2"))),
    ("function", r(i("f"), paren(i("x")), o("="), sup(i("x"), n("2")), o("-"), n("1"))),
    (
        "sine",
        r(
            sup(("fn", "sin", None), n("2")),
            i("θ"),
            o("+"),
            sup(("fn", "cos", None), n("2")),
            i("θ"),
            o("="),
            n("1"),
        ),
    ),
    ("log", r(("fn", "log", sub(None, n("2"))), n("8"), o("="), n("3"))),
    (
        "power",
        r(sup(n("2"), r(i("n"), o("+"), n("1"))), o("="), n("2"), o("·"), sup(n("2"), i("n"))),
    ),
    (
        "subscript",
        r(
            sub(i("a"), i("n")),
            o("="),
            sub(i("a"), n("1")),
            o("+"),
            paren(i("n"), o("-"), n("1")),
            i("d"),
        ),
    ),
    (
        "sum",
        r(
            ("nary", "∑", r(i("k"), o("="), n("1")), i("n"), i("k")),
            o("="),
            frac(r(i("n"), paren(i("n"), o("+"), n("1"))), n("2")),
        ),
    ),
    (
        "integral",
        r(
            ("nary", "∫", n("0"), n("1"), r(sup(i("x"), n("2")), i("d"), i("x"))),
            o("="),
            frac(n("1"), n("3")),
        ),
    ),
    (
        "limit",
        r(
            ("lim", r(i("x"), o("→"), n("0")), frac(r(("fn", "sin", None), i("x")), i("x"))),
            o("="),
            n("1"),
        ),
    ),
    ("segment", r(("bar", r(i("A"), i("B"))), o("="), n("5"))),
    ("vector", r(("vec", i("a")), o("·"), ("vec", i("b")), o("="), n("0"))),
    ("angle", r(o("∠"), i("A"), i("B"), i("C"), o("="), sup(n("90"), o("°")))),
    ("pi", r(i("S"), o("="), i("π"), sup(i("r"), n("2")))),
    (
        "set",
        r(i("A"), o("="), paren(n("1"), o(","), n("2"), o(","), n("3"), opener="{", closer="}")),
    ),
    ("interval", r(i("x"), o("∈"), paren(n("0"), o(","), n("1"), opener="[", closer=")"))),
    (
        "cases",
        r(
            i("f"),
            paren(i("x")),
            o("="),
            (
                "cases",
                [
                    r(i("x"), o(","), i("x"), o("≥"), n("0")),
                    r(o("-"), i("x"), o(","), i("x"), o("<"), n("0")),
                ],
            ),
        ),
    ),
    ("matrix", r(i("A"), o("="), ("matrix", [[n("1"), n("2")], [n("3"), n("4")]]))),
    ("times", r(n("12"), o("×"), n("3"), o("÷"), n("4"), o("="), n("9"))),
    ("decimal", r(n("0.5"), o("+"), n("1.25"), o("="), n("1.75"))),
    ("neq", r(i("x"), o("≠"), n("0"))),
    ("prime", r(sup(i("f"), o("′")), paren(i("x")), o("="), n("2"), i("x"))),
    ("korean", r(("t", "넓이"), o("="), n("36"))),
    ("percent", r(n("30"), o("%"), o("="), n("0.3"))),
]

# ---------------------------------------------------------------- reference LaTeX

LATEX_OPERATORS = {
    "±": "\\pm",
    "≤": "\\le",
    "≥": "\\ge",
    "≠": "\\neq",
    "·": "\\cdot",
    "×": "\\times",
    "÷": "\\div",
    "→": "\\to",
    "∈": "\\in",
    "∠": "\\angle",
    "°": "\\circ",
    "′": "\\prime",
    "%": "\\%",
    "{": "\\{",
    "}": "\\}",
}
LATEX_LETTERS = {"θ": "\\theta", "π": "\\pi"}
LATEX_NARY = {"∑": "\\sum", "∫": "\\int"}


def latex(t) -> str:
    kind = t[0]
    if kind == "i":
        return LATEX_LETTERS.get(t[1], t[1])
    if kind == "n":
        return t[1]
    if kind == "o":
        return LATEX_OPERATORS.get(t[1], t[1])
    if kind == "t":
        return "\\text{" + t[1] + "}"
    if kind == "r":
        out = ""
        for kid in t[1:]:
            piece = latex(kid)
            if (
                out
                and out[-1].isalpha()
                and piece[:1].isalpha()
                and out.rstrip("abcdefghijklmnopqrstuvwxyz").endswith("\\")
            ):
                out += " "
            out += piece
        return out
    if kind == "frac":
        return "\\frac{" + latex(t[1]) + "}{" + latex(t[2]) + "}"
    if kind == "sup":
        return base_latex(t[1]) + "^{" + latex(t[2]) + "}"
    if kind == "sub":
        return base_latex(t[1]) + "_{" + latex(t[2]) + "}"
    if kind == "sqrt":
        return "\\sqrt{" + latex(t[1]) + "}"
    if kind == "root":
        return "\\sqrt[" + latex(t[2]) + "]{" + latex(t[1]) + "}"
    if kind == "fence":
        left = LATEX_OPERATORS.get(t[1], t[1])
        right = LATEX_OPERATORS.get(t[2], t[2])
        return "\\left" + left + latex(t[3]) + "\\right" + right
    if kind == "fn":
        name = "\\" + t[1]
        if t[2] is not None:  # log_2
            return name + "_{" + latex(t[2][2]) + "}"
        return name + " "
    if kind in ("bar", "vec"):
        return "\\overline{" + latex(t[1]) + "}" if kind == "bar" else "\\vec{" + latex(t[1]) + "}"
    if kind == "nary":
        return LATEX_NARY[t[1]] + "_{" + latex(t[2]) + "}^{" + latex(t[3]) + "}" + latex(t[4])
    if kind == "lim":
        return "\\lim_{" + latex(t[1]) + "}" + latex(t[2])
    if kind == "cases":
        rows = [latex(row).replace(",", " & ", 1) for row in t[1]]
        return "\\begin{cases}" + " \\\\ ".join(rows) + "\\end{cases}"
    if kind == "matrix":
        rows = [" & ".join(latex(c) for c in row) for row in t[1]]
        return "\\begin{pmatrix}" + " \\\\ ".join(rows) + "\\end{pmatrix}"
    raise ValueError(kind)


def base_latex(t) -> str:
    if t is None:
        return "{}"
    if t[0] == "fn":
        return "\\" + t[1]
    s = latex(t)
    return s if len(s) == 1 or t[0] in ("i", "n") else "{" + s + "}"


# ---------------------------------------------------------------- presentation writers


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Presentation:
    """Neutral presentation MathML; producers override what they write differently."""

    p = ""  # element prefix, "mml:" for Word
    wrap_args = False  # every argument in its own <mrow> (OMML2MML)
    apply_function = True  # &#x2061; after a function name
    invisible_times = False

    def el(self, name, body, attrs=""):
        return f"<{self.p}{name}{attrs}>{body}</{self.p}{name}>"

    def arg(self, t):
        inner = self.write(t)
        return self.el("mrow", inner) if self.wrap_args and t[0] != "r" else inner

    def ident(self, x):
        attrs = ' mathvariant="normal"' if len(x) > 1 else ""
        return self.el("mi", esc(x), attrs)

    def number(self, x):
        return self.el("mn", esc(x))

    def op(self, x):
        return self.el("mo", esc(x))

    def text(self, x):
        return self.el("mtext", esc(x))

    def row(self, kids):
        out = []
        previous = None
        for kid in kids:
            if (
                self.invisible_times
                and previous is not None
                and previous[0] in ("i", "n")
                and kid[0] == "i"
            ):
                out.append(self.op("\u2062"))
            out.append(self.write(kid))
            previous = kid
        return "".join(out)

    def fence(self, opener, closer, body):
        return self.el("mrow", self.op(opener) + self.write(body) + self.op(closer))

    def function(self, name, script):
        head = self.el("mi", name)
        if script is not None:
            head = self.el("msub", head + self.arg(script[2]))
        return head + (self.op("\u2061") if self.apply_function else "")

    def nary(self, symbol, low, high, body):
        return self.el("munderover", self.op(symbol) + self.arg(low) + self.arg(high)) + self.write(
            body
        )

    def over(self, base, accent):
        return self.el("mover", self.arg(base) + self.op(accent), ' accent="true"')

    def table(self, rows, opener, closer):
        trs = "".join(
            self.el("mtr", "".join(self.el("mtd", self.write(c)) for c in cells)) for cells in rows
        )
        table = self.el("mtable", trs, ' columnalign="left"' if opener == "{" else "")
        return self.fence_table(opener, closer, table)

    def fence_table(self, opener, closer, table):
        return self.el("mrow", self.op(opener) + table + (self.op(closer) if closer else ""))

    def write(self, t) -> str:
        kind = t[0]
        if kind == "i":
            return self.ident(t[1])
        if kind == "n":
            return self.number(t[1])
        if kind == "o":
            return self.op(t[1])
        if kind == "t":
            return self.text(t[1])
        if kind == "r":
            return self.el("mrow", self.row(t[1:]))
        if kind == "frac":
            return self.el("mfrac", self.arg(t[1]) + self.arg(t[2]))
        if kind == "sup":
            if t[1][0] == "fn":
                return self.el("msup", self.el("mi", t[1][1]) + self.arg(t[2])) + (
                    self.op("\u2061") if self.apply_function else ""
                )
            return self.el("msup", self.arg(t[1]) + self.arg(t[2]))
        if kind == "sub":
            return self.el("msub", self.arg(t[1]) + self.arg(t[2]))
        if kind == "sqrt":
            return self.el("msqrt", self.write(t[1]))
        if kind == "root":
            return self.el("mroot", self.arg(t[1]) + self.arg(t[2]))
        if kind == "fence":
            return self.fence(t[1], t[2], t[3])
        if kind == "fn":
            return self.function(t[1], t[2])
        if kind == "bar":
            return self.over(t[1], "\u00af")
        if kind == "vec":
            return self.over(t[1], "\u2192")
        if kind == "nary":
            return self.nary(t[1], t[2], t[3], t[4])
        if kind == "lim":
            return self.el("munder", self.el("mo", "lim") + self.arg(t[1])) + self.write(t[2])
        if kind == "cases":
            rows = [
                [r(*row[1 : row.index(("o", ","))]), r(*row[row.index(("o", ",")) + 1 :])]
                for row in t[1]
            ]
            return self.table(rows, "{", "")
        if kind == "matrix":
            return self.table(t[1], "(", ")")
        raise ValueError(kind)

    def math(self, t) -> str:
        return f'<math xmlns="{NS}">' + self.write(t) + "</math>"


class MathType(Presentation):
    invisible_times = True

    def math(self, t):
        mtef = (
            "MathType@MTEF@5@5@+=feaagKart1ev2aaatCvAUfeBSjuyZL2yd9gzLbvyNv2CaerbuLwBLnhiov2D"
            "Gi1BTfMBaeXatLxBI9gBaerbd9wDYLwzYbItLDharqqtubsr4rNCHbGeaGqiVu0Je9sqqrpepC0xbbL8"
            "F4rqqrFfpeea0xe9Lq"
        )
        return (
            f'<math xmlns="{NS}" display="block"><semantics>'
            + self.write(t)
            + f'<annotation encoding="MathType-MTEF">{mtef}</annotation></semantics></math>'
        )


class Wiris(Presentation):
    apply_function = False

    def op(self, x):
        x = {"-": "\u2212", "·": "\u00b7"}.get(x, x)
        return self.el("mo", esc(x))

    def fence(self, opener, closer, body):
        attrs = (
            "" if (opener, closer) == ("(", ")") else f' open="{esc(opener)}" close="{esc(closer)}"'
        )
        return self.el("mfenced", self.write(body), attrs)

    def fence_table(self, opener, closer, table):
        return self.el("mfenced", table, f' open="{opener}" close="{closer}"')

    def math(self, t):
        # Wiris keeps the LaTeX the author typed, when there was one; it can go stale.
        return (
            f'<math xmlns="{NS}" class="wrs_chemistry"><semantics>'
            + self.write(t)
            + '<annotation encoding="LaTeX">x</annotation></semantics></math>'
        )


# Cambria Math's italic letters, as Word's linear format stores them.
def math_italic(c: str) -> str:
    if c == "h":
        return "\u210e"
    if "a" <= c <= "z":
        return chr(0x1D44E + ord(c) - ord("a"))
    if "A" <= c <= "Z":
        return chr(0x1D434 + ord(c) - ord("A"))
    if c == "θ":
        return "\U0001d703"
    if c == "π":
        return "\U0001d70b"
    return c


class Word(Presentation):
    p = "mml:"
    wrap_args = True
    italic_letters = True

    def ident(self, x):
        if len(x) > 1:
            return self.el("mi", esc(x), ' mathvariant="normal"')
        return self.el("mi", esc(math_italic(x) if self.italic_letters else x))

    def fence(self, opener, closer, body):
        attrs = ' separators="|"'
        if (opener, closer) != ("(", ")"):
            attrs = f' open="{esc(opener)}" close="{esc(closer)}" separators="|"'
        return self.el("mfenced", self.el("mrow", self.write(body)), attrs)

    def fence_table(self, opener, closer, table):
        return self.el(
            "mfenced", self.el("mrow", table), f' open="{opener}" close="{closer}" separators="|"'
        )

    def function(self, name, script):
        head = self.el("mi", name, ' mathvariant="normal"')
        if script is not None:
            head = self.el("msub", self.el("mrow", head) + self.arg(script[2]))
        return self.el("mrow", head) + self.op("\u2061")

    def nary(self, symbol, low, high, body):
        op = self.el("mrow", self.el("mo", symbol, ' stretchy="false"'))
        return self.el(
            "mrow",
            self.el("munderover", op + self.arg(low) + self.arg(high))
            + self.el("mrow", self.write(body)),
        )

    def math(self, t):
        return (
            f'<mml:math xmlns:mml="{NS}" '
            'xmlns:m="http://schemas.openxmlformats.org/officeDocument/2006/math">'
            + self.write(t)
            + "</mml:math>"
        )


class GoogleDocs(Word):
    italic_letters = False

    def number(self, x):
        return (
            "".join(self.el("mn", c) if c.isdigit() else self.el("mo", c) for c in x)
            if len(x) > 1 and "." not in x
            else self.el("mn", x)
        )

    def text(self, x):
        return self.el("mi", esc(x), ' mathvariant="normal"')


# Operators typed with the Korean input method on come out full-width (＝ ＋).
FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "+="}


class Hwp(Presentation):
    apply_function = False

    def op(self, x):
        return self.el("mo", esc(FULL_WIDTH.get(x, x)))

    def text(self, x):
        return self.el("mi", esc(x))

    def row(self, kids):
        # the spaces the author typed between words (~ in HWP's script) are <mo> </mo>
        out = []
        for kid in kids:
            if out and kid[0] == "t":
                out.append(self.el("mo", " "))
            out.append(self.write(kid))
        return "".join(out)

    def math(self, t):
        return f'<math xmlns="{NS}">' + self.write(t) + "</math>"


class MathJax(Presentation):
    apply_function = True

    def fence(self, opener, closer, body):
        return self.el(
            "mrow",
            self.el("mo", esc(opener), ' data-mjx-texclass="OPEN"')
            + self.write(body)
            + self.el("mo", esc(closer), ' data-mjx-texclass="CLOSE"'),
            ' data-mjx-texclass="INNER"',
        )

    def ident(self, x):
        if len(x) > 1:
            return self.el("mi", esc(x), ' data-mjx-auto-op="false"')
        return self.el("mi", esc(x))

    def math(self, t):
        source = esc(latex(t)).replace('"', "&quot;")
        return (
            '<mjx-assistive-mml unselectable="on" display="inline">'
            f'<math xmlns="{NS}" data-latex="{source}">'
            + self.write(t)
            + "</math></mjx-assistive-mml>"
        )


class LibreOffice(Presentation):
    apply_function = False

    def op(self, x):
        return self.el("mo", esc(x), ' stretchy="false"')

    def ident(self, x):
        return self.el("mi", esc(x), ' mathvariant="normal"' if len(x) > 1 else "")

    def fence(self, opener, closer, body):
        return self.el(
            "mrow",
            self.el("mo", esc(opener), ' fence="true" form="prefix" stretchy="false"')
            + self.write(body)
            + self.el("mo", esc(closer), ' fence="true" form="postfix" stretchy="false"'),
        )

    def math(self, t):
        return (
            f'<math xmlns="{NS}" display="block"><semantics>'
            + self.write(t)
            + '<annotation encoding="StarMath 5.0">stale</annotation></semantics></math>'
        )


# ---------------------------------------------------------------- GeoGebra: content MathML
# (id, content MathML body, reference LaTeX)
GEOGEBRA = [
    ("divide", "<apply><divide/><cn>3</cn><cn>4</cn></apply>", "\\frac{3}{4}"),
    (
        "linear",
        "<apply><eq/><ci>y</ci><apply><plus/><apply><times/><cn>2</cn><ci>x</ci></apply><cn>3</cn></apply></apply>",
        "y=2x+3",
    ),
    (
        "quadratic",
        "<apply><eq/><ci>y</ci><apply><plus/><apply><power/><ci>x</ci><cn>2</cn></apply><apply><times/><cn>4</cn><ci>x</ci></apply><cn>1</cn></apply></apply>",
        "y=x^{2}+4x+1",
    ),
    ("minus", "<apply><minus/><ci>a</ci><ci>b</ci></apply>", "a-b"),
    ("negate", "<apply><minus/><ci>x</ci></apply>", "-x"),
    (
        "sqrt",
        "<apply><root/><apply><plus/><apply><power/><ci>a</ci><cn>2</cn></apply><apply><power/><ci>b</ci><cn>2</cn></apply></apply></apply>",
        "\\sqrt{a^{2}+b^{2}}",
    ),
    ("cuberoot", "<apply><root/><degree><cn>3</cn></degree><ci>x</ci></apply>", "\\sqrt[3]{x}"),
    (
        "power-of-sum",
        "<apply><power/><apply><plus/><ci>x</ci><cn>1</cn></apply><cn>2</cn></apply>",
        "\\left(x+1\\right)^{2}",
    ),
    (
        "product-of-sums",
        "<apply><times/><apply><plus/><ci>x</ci><cn>1</cn></apply><apply><minus/><ci>x</ci><cn>2</cn></apply></apply>",
        "\\left(x+1\\right)\\left(x-2\\right)",
    ),
    ("lt", "<apply><lt/><ci>x</ci><cn>5</cn></apply>", "x<5"),
    ("leq", "<apply><leq/><cn>0</cn><ci>x</ci></apply>", "0\\le x"),
    ("geq", "<apply><geq/><ci>y</ci><apply><minus/><cn>1</cn></apply></apply>", "y\\ge -1"),
    ("neq", "<apply><neq/><ci>x</ci><cn>0</cn></apply>", "x\\neq 0"),
    ("sin", "<apply><eq/><ci>f</ci><apply><sin/><ci>x</ci></apply></apply>", "f=\\sin x"),
    (
        "cos-2x",
        "<apply><cos/><apply><times/><cn>2</cn><ci>x</ci></apply></apply>",
        "\\cos\\left(2x\\right)",
    ),
    ("tan", "<apply><tan/><ci>&#x3B8;</ci></apply>", "\\tan\\theta"),
    ("ln", "<apply><ln/><ci>x</ci></apply>", "\\ln x"),
    ("log2", "<apply><log/><logbase><cn>2</cn></logbase><cn>8</cn></apply>", "\\log_{2}8"),
    ("exp", "<apply><exp/><ci>x</ci></apply>", "e^{x}"),
    (
        "abs",
        "<apply><abs/><apply><minus/><ci>x</ci><cn>3</cn></apply></apply>",
        "\\left|x-3\\right|",
    ),
    ("factorial", "<apply><factorial/><ci>n</ci></apply>", "n!"),
    (
        "pi-r2",
        "<apply><times/><pi/><apply><power/><ci>r</ci><cn>2</cn></apply></apply>",
        "\\pi r^{2}",
    ),
    ("set", "<set><cn>1</cn><cn>2</cn><cn>3</cn></set>", "\\left\\{1,2,3\\right\\}"),
    (
        "set-builder",
        "<set><bvar><ci>x</ci></bvar><condition><apply><gt/><ci>x</ci><cn>0</cn></apply></condition></set>",
        "\\left\\{x\\mid x>0\\right\\}",
    ),
    (
        "interval",
        '<interval closure="closed-open"><cn>0</cn><cn>1</cn></interval>',
        "\\left[0,1\\right)",
    ),
    (
        "interval-open",
        '<interval closure="open"><apply><minus/><infinity/></apply><cn>2</cn></interval>',
        "\\left(-\\infty,2\\right)",
    ),
    ("in-reals", "<apply><in/><ci>x</ci><reals/></apply>", "x\\in\\mathbb{R}"),
    ("union", "<apply><union/><ci>A</ci><ci>B</ci></apply>", "A\\cup B"),
    ("intersect", "<apply><intersect/><ci>A</ci><ci>B</ci></apply>", "A\\cap B"),
    ("subset", "<apply><subset/><ci>A</ci><ci>B</ci></apply>", "A\\subseteq B"),
    ("rational", '<cn type="rational">2<sep/>3</cn>', "\\frac{2}{3}"),
    (
        "function-of",
        "<apply><eq/><apply><ci>f</ci><ci>x</ci></apply><apply><divide/><cn>1</cn><ci>x</ci></apply></apply>",
        "f\\left(x\\right)=\\frac{1}{x}",
    ),
]

# Cases only some producers write.
EXTRA = {
    "hwp": [
        (
            "typed-space",
            r(("t", "대각선의"), ("t", "길이"), o("="), n("10")),
            "\\text{대각선의 길이}=10",
        ),
        ("full-width", r(n("２"), o("＋"), n("３"), o("＝"), n("５")), "2+3=5"),
    ],
    "word": [
        ("upright-text", r(("t", "넓이"), o("="), i("a"), i("b")), "\\text{넓이}=ab"),
    ],
}

WRITERS = {
    "mathtype": MathType(),
    "wiris": Wiris(),
    "word": Word(),
    "hwp": Hwp(),
    "mathjax": MathJax(),
    "libreoffice": LibreOffice(),
    "googledocs": GoogleDocs(),
}


def main() -> None:
    for producer, writer in WRITERS.items():
        with (HERE / f"{producer}.jsonl").open("w", encoding="utf-8") as fp:
            for name, tree in FORMULAS:
                line = {
                    "id": f"{producer}-{name}",
                    "producer": producer,
                    "mathml": writer.math(tree),
                    "reference_latex": latex(tree),
                }
                fp.write(json.dumps(line, ensure_ascii=False) + "\n")
            for name, tree, reference in EXTRA.get(producer, []):
                line = {
                    "id": f"{producer}-{name}",
                    "producer": producer,
                    "mathml": writer.math(tree),
                    "reference_latex": reference,
                }
                fp.write(json.dumps(line, ensure_ascii=False) + "\n")
    with (HERE / "geogebra.jsonl").open("w", encoding="utf-8") as fp:
        for name, body, reference in GEOGEBRA:
            line = {
                "id": f"geogebra-{name}",
                "producer": "geogebra",
                "mathml": f'<math xmlns="{NS}">{body}</math>',
                "reference_latex": reference,
            }
            fp.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
