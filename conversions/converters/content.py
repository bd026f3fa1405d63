"""Content MathML (the school subset) -> LaTeX.

GeoGebra and some authoring tools export only Content MathML: `<apply><divide/><cn>3</cn>
<cn>4</cn></apply>` says "3 divided by 4" and leaves the drawing to the reader. This module
draws the subset that school mathematics uses, the way a textbook writes it (MathML 3,
chapter 4, and its "default rendering" notes): arithmetic (plus, minus, times, divide,
unary minus), relations, powers, roots, absolute value, factorial, the usual functions
(sin ... arctan, exp, ln, log with a base, min, max, gcd, lcm), sets (enumerated, by a
condition), intervals, set operations and the usual constants and number sets. Anything
else is refused with a ContentRefused naming the element, so that the formula goes to a
person or the LLM instead of being drawn wrong.

Tokens (<ci>, <cn>) are written by the caller's `token(text, element)` so that characters
are handled exactly as in presentation MathML.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from conversions.converters.errors import ConversionError
from conversions.converters.messages import Message, _
from conversions.converters.parse import local_name

Token = Callable[[str, etree._Element], str]
Presentation = Callable[[etree._Element], str]

# Precedence of what a LaTeX piece is: a child with a lower one than its place needs is
# put in parentheses.
RELATION, SUM, PRODUCT, PREFIX, POWER, ATOM = range(6)

RELATIONS = {
    "eq": "=",
    "neq": "\\neq",
    "lt": "<",
    "gt": ">",
    "leq": "\\le",
    "geq": "\\ge",
    "approx": "\\approx",
    "equivalent": "\\equiv",
    "in": "\\in",
    "notin": "\\notin",
    "subset": "\\subseteq",
    "prsubset": "\\subset",
    "notsubset": "\\not\\subseteq",
    "notprsubset": "\\not\\subset",
    "factorof": "\\mid",
}
SET_OPERATORS = {"union": "\\cup", "intersect": "\\cap", "setdiff": "\\setminus"}
FUNCTIONS = {
    name: "\\" + name
    for name in [
        "sin",
        "cos",
        "tan",
        "cot",
        "sec",
        "csc",
        "arcsin",
        "arccos",
        "arctan",
        "sinh",
        "cosh",
        "tanh",
        "coth",
        "ln",
        "exp",
    ]
}
LISTED_FUNCTIONS = {"min": "\\min", "max": "\\max", "gcd": "\\gcd", "lcm": "\\operatorname{lcm}"}
CONSTANTS = {
    "pi": "\\pi",
    "exponentiale": "e",
    "imaginaryi": "i",
    "infinity": "\\infty",
    "emptyset": "\\emptyset",
    "naturalnumbers": "\\mathbb{N}",
    "integers": "\\mathbb{Z}",
    "rationals": "\\mathbb{Q}",
    "reals": "\\mathbb{R}",
    "complexes": "\\mathbb{C}",
    "true": "\\mathrm{true}",
    "false": "\\mathrm{false}",
}
INTERVAL_FENCES = {
    "closed": ("[", "]"),
    "open": ("(", ")"),
    "open-closed": ("(", "]"),
    "closed-open": ("[", ")"),
}
# The names this module reads: the caller sends every one of them here.
ELEMENTS = frozenset(
    {"apply", "ci", "cn", "csymbol", "set", "list", "interval", "bvar", "condition"}
    | {"degree", "logbase", "sep", "plus", "minus", "times", "divide", "power", "root"}
    | {"abs", "factorial", "log"}
    | set(RELATIONS)
    | set(SET_OPERATORS)
    | set(FUNCTIONS)
    | set(LISTED_FUNCTIONS)
    | set(CONSTANTS)
)
# Content elements outside the subset, refused by name (the rest of chapter 4).
REFUSED = frozenset(
    [
        "bind",
        "lambda",
        "piecewise",
        "piece",
        "otherwise",
        "declare",
        "inverse",
        "compose",
        "ident",
        "domain",
        "codomain",
        "image",
        "domainofapplication",
        "int",
        "diff",
        "partialdiff",
        "lowlimit",
        "uplimit",
        "limit",
        "tendsto",
        "sum",
        "product",
        "vector",
        "matrix",
        "matrixrow",
        "determinant",
        "transpose",
        "selector",
        "vectorproduct",
        "scalarproduct",
        "outerproduct",
        "divergence",
        "grad",
        "curl",
        "laplacian",
        "mean",
        "sdev",
        "variance",
        "median",
        "mode",
        "moment",
        "momentabout",
        "and",
        "or",
        "xor",
        "not",
        "implies",
        "forall",
        "exists",
        "quotient",
        "rem",
        "floor",
        "ceiling",
        "real",
        "imaginary",
        "arg",
        "conjugate",
        "card",
        "cartesianproduct",
        "share",
        "cerror",
        "cbytes",
        "cs",
        "eulergamma",
        "notanumber",
        "primes",
    ]
)


def _joined(operator: str, operands: list[str]) -> str:
    """Operands with an infix operator, a space where a command would run into a letter."""
    out = operands[0]
    for operand in operands[1:]:
        space = " " if operator[-1].isalpha() and operand[:1].isalpha() else ""
        out += operator + space + operand
    return out


class ContentRefused(ConversionError):
    """Content MathML outside the school subset; the message names the element."""


def refusal(name: str) -> Message:
    return _(
        "content MathML <%(name)s> is not converted: only arithmetic, relations, powers, "
        "roots, common functions, sets and intervals are."
    ) % {"name": name}


class Writer:
    """One formula's content elements as LaTeX; `token` writes <ci>/<cn> text,
    `presentation` presentation markup found inside a <ci> or <cn>."""

    def __init__(self, token: Token, presentation: Presentation) -> None:
        self.token = token
        self.presentation = presentation

    def latex(self, el: etree._Element) -> str:
        return self.write(el)[0]

    def write(self, el: etree._Element) -> tuple[str, int]:
        name = local_name(el.tag)
        if name == "apply":
            return self.apply(el)
        if name == "ci":
            return self.ci(el), ATOM
        if name == "cn":
            return self.cn(el)
        if name in CONSTANTS:
            return CONSTANTS[name], ATOM
        if name == "set":
            return self.set(el), ATOM
        if name == "list":
            items = ",".join(self.latex(kid) for kid in el)
            return "\\left(" + items + "\\right)", ATOM
        if name == "interval":
            return self.interval(el), ATOM
        if name == "csymbol":
            return self.csymbol(el), ATOM
        raise ContentRefused(refusal(name))

    def wrapped(self, el: etree._Element, needed: int) -> str:
        latex, level = self.write(el)
        return latex if level >= needed else "\\left(" + latex + "\\right)"

    def ci(self, el: etree._Element) -> str:
        if len(el):
            return "".join(self.presentation(kid) for kid in el)
        return self.token((el.text or "").strip(), el)

    def cn(self, el: etree._Element) -> tuple[str, int]:
        kind = el.get("type") or "real"
        parts = [el.text or ""] + [kid.tail or "" for kid in el]
        seps = [kid for kid in el if local_name(kid.tag) == "sep"]
        if len(el) and not seps:
            return "".join(self.presentation(kid) for kid in el), ATOM
        if seps:
            first, second = parts[0].strip(), parts[1].strip()
            if kind == "rational":
                return "\\frac{" + first + "}{" + second + "}", ATOM
            if kind == "e-notation":
                return first + "\\times 10^{" + second + "}", PRODUCT
            if kind == "complex-cartesian":
                return first + "+" + second + "i", SUM
            raise ContentRefused(refusal(f"cn type={kind}"))
        text = parts[0].strip()
        latex = self.token(text, el)
        return latex, (PREFIX if text.startswith(("-", "\u2212")) else ATOM)

    def csymbol(self, el: etree._Element) -> str:
        name = (el.text or "").strip()
        if name in CONSTANTS:
            return CONSTANTS[name]
        raise ContentRefused(refusal(f"csymbol {name}"))

    def set(self, el: etree._Element) -> str:
        kids = list(el)
        bvars = [k for k in kids if local_name(k.tag) == "bvar"]
        conditions = [k for k in kids if local_name(k.tag) == "condition"]
        if bvars or conditions:
            if len(bvars) != 1 or len(conditions) != 1:
                raise ContentRefused(refusal("set"))
            variable = ",".join(self.latex(k) for k in bvars[0])
            condition = ",".join(self.latex(k) for k in conditions[0])
            return "\\left\\{" + variable + "\\mid " + condition + "\\right\\}"
        return "\\left\\{" + ",".join(self.latex(kid) for kid in kids) + "\\right\\}"

    def interval(self, el: etree._Element) -> str:
        fences = INTERVAL_FENCES.get(el.get("closure") or "closed")
        kids = list(el)
        if fences is None or len(kids) != 2:
            raise ContentRefused(refusal("interval"))
        return (
            "\\left"
            + fences[0]
            + self.latex(kids[0])
            + ","
            + self.latex(kids[1])
            + "\\right"
            + fences[1]
        )

    def apply(self, el: etree._Element) -> tuple[str, int]:
        kids = list(el)
        if not kids:
            raise ContentRefused(refusal("apply"))
        head = local_name(kids[0].tag)
        if head == "csymbol":
            head = (kids[0].text or "").strip()
        args = [kid for kid in kids[1:] if local_name(kid.tag) not in ("degree", "logbase")]
        qualifiers = {local_name(k.tag): k for k in kids[1:] if k not in args}
        if head == "plus":
            return self.sum(args), SUM
        if head == "minus":
            if len(args) == 1:
                return "-" + self.wrapped(args[0], PRODUCT), PREFIX
            if len(args) == 2:
                return self.wrapped(args[0], SUM) + "-" + self.wrapped(args[1], PRODUCT), SUM
        elif head == "times":
            return self.product(args), PRODUCT
        elif head == "divide" and len(args) == 2:
            return "\\frac{" + self.latex(args[0]) + "}{" + self.latex(args[1]) + "}", ATOM
        elif head == "power" and len(args) == 2:
            return self.wrapped(args[0], ATOM) + "^{" + self.latex(args[1]) + "}", POWER
        elif head == "root" and len(args) == 1:
            degree = qualifiers.get("degree")
            index = "[" + self.latex(degree[0]) + "]" if degree is not None and len(degree) else ""
            if index == "[2]":
                index = ""
            return "\\sqrt" + index + "{" + self.latex(args[0]) + "}", ATOM
        elif head == "abs" and len(args) == 1:
            return "\\left|" + self.latex(args[0]) + "\\right|", ATOM
        elif head == "factorial" and len(args) == 1:
            return self.wrapped(args[0], ATOM) + "!", POWER
        elif head in RELATIONS and len(args) >= 2:
            return _joined(RELATIONS[head], [self.wrapped(a, SUM) for a in args]), RELATION
        elif head in SET_OPERATORS and len(args) >= 2:
            return _joined(SET_OPERATORS[head], [self.wrapped(a, PRODUCT) for a in args]), SUM
        elif head in FUNCTIONS and len(args) == 1:
            if head == "exp":
                return "e^{" + self.latex(args[0]) + "}", POWER
            return self.function(FUNCTIONS[head], args[0]), PREFIX
        elif head == "log" and len(args) == 1:
            base = qualifiers.get("logbase")
            command = (
                "\\log_{" + self.latex(base[0]) + "}" if base is not None and len(base) else "\\log"
            )
            return self.function(command, args[0]), PREFIX
        elif head in LISTED_FUNCTIONS and args:
            items = ",".join(self.latex(a) for a in args)
            return LISTED_FUNCTIONS[head] + "\\left(" + items + "\\right)", ATOM
        elif head == "ci" and args:
            items = ",".join(self.latex(a) for a in args)
            return self.ci(kids[0]) + "\\left(" + items + "\\right)", ATOM
        raise ContentRefused(refusal(head))

    def function(self, command: str, arg: etree._Element) -> str:
        latex, level = self.write(arg)
        if level >= POWER and local_name(arg.tag) != "apply":
            return command + " " + latex if latex[0].isalnum() else command + latex
        return command + "\\left(" + latex + "\\right)"

    def sum(self, args: list[etree._Element]) -> str:
        out = ""
        for i, arg in enumerate(args):
            latex, level = self.write(arg)
            if i and latex.startswith("-") and level == PREFIX or level < SUM:
                latex = "\\left(" + latex + "\\right)"
            out += ("+" if i else "") + latex
        return out

    def product(self, args: list[etree._Element]) -> str:
        out = ""
        for i, arg in enumerate(args):
            latex, level = self.write(arg)
            if level < PRODUCT or (i and level == PREFIX):
                latex = "\\left(" + latex + "\\right)"
            if i and (latex[0].isdigit() or latex.startswith("\\frac")):
                out += "\\times "
            elif i and out[-1].isalpha() and latex[0].isalpha():
                out += " "
            out += latex
        return out
