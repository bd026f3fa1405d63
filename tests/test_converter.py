"""The deterministic MathML -> LaTeX converter and its safe parser (no database)."""

import json
import random
from pathlib import Path

import pytest

from conversions.converters import (
    ConversionError,
    InvalidMathML,
    account,
    mathml_to_latex,
    normalize_mathml,
    parse_mathml,
    validate,
)
from conversions.converters.commands import forbidden_commands
from conversions.converters.parse import default_limits
from conversions.converters.validate import syntax_problems

NS = 'xmlns="http://www.w3.org/1998/Math/MathML"'


def convert(body: str) -> str:
    return mathml_to_latex(f"<math {NS}>{body}</math>")


# (MathML inside <math>, LaTeX), by construct family. Every output must also pass the
# MathLive syntax check (test_outputs_are_mathlive_latex).
TOKENS = [
    ("<mi>x</mi>", "x"),
    ("<mi>sin</mi><mo>&#x2061;</mo><mi>x</mi>", "\\sin x"),
    ("<mi>area</mi>", "\\operatorname{area}"),
    ('<mi mathvariant="normal">d</mi><mi>x</mi>', "\\mathrm{d}x"),
    (
        '<mi>α</mi><mo>+</mo><mi>Γ</mi><mo>+</mo><mi mathvariant="normal">Γ</mi>',
        "\\alpha+\\varGamma+\\Gamma",
    ),
    ('<mi mathvariant="bold">v</mi>', "\\mathbf{v}"),
    ('<mi mathvariant="double-struck">R</mi><mo>,</mo><mi>ℝ</mi>', "\\mathbb{R},\\mathbb{R}"),
    ("<mi>𝐱</mi>", "\\mathbf{x}"),
    ('<mi mathvariant="fraktur">g</mi>', "\\mathfrak{g}"),
    ('<mi mathvariant="script">L</mi>', "\\mathscr{L}"),
    ('<mi mathvariant="bold-italic">x</mi>', "\\boldsymbol{x}"),
    ('<mstyle mathvariant="bold"><mi>x</mi><mn>1</mn></mstyle>', "\\mathbf{x}\\mathbf{1}"),
    ("<mn>3.14</mn>", "3.14"),
    ("<mn>1,000</mn>", "1{,}000"),
    (
        "<mo>≤</mo><mo>≠</mo><mo>∞</mo><mo>→</mo><mo>×</mo><mo>÷</mo><mo>±</mo>",
        "\\le\\ne\\infty\\rightarrow\\times\\div\\pm",
    ),
    (
        "<mi>a</mi><mo>#</mo><mo>%</mo><mo>&amp;</mo><mo>_</mo><mo>−</mo><mi>b</mi>",
        "a\\#\\%\\&\\_-b",
    ),
    ("<mi>x</mi><mo>⋯</mo><mo>…</mo><mo>⋮</mo>", "x\\cdots\\ldots\\vdots"),
    ("<mo>≮</mo><mo>≪̸</mo>", "\\nless\\not\\ll"),
    (
        '<mi>x</mi><mspace width="1em"/><mi>y</mi><mspace width="0.1667em"/><mi>z</mi>',
        "x\\quad y\\,z",
    ),
    # a letter and its combining accent are one character where Unicode has one ...
    ("<mi>e&#x301;</mi>", "\u00e9"),
    # ... but characters without marks keep their code point: NFC would replace canonical
    # singletons and composition exclusions (U+1F71 ά, U+FB30 אּ) by other characters
    ("<mi>&#x1F71;</mi><mi>&#xFB30;</mi>", "\u1f71\ufb30"),
    # a mark without a LaTeX accent on a letter is drawn with its letter, as text
    ("<mi>&#x5D0;&#x5BC;</mi>", "\\text{\u05d0\u05bc}"),
    # a lone mark without a LaTeX accent is the character itself, apart from the text before
    ("<mtext>a</mtext><mo>&#xFE20;</mo>", "\\text{a}\\text{\ufe20}"),
    ("<mo>&#x20D2;</mo>", "\\text{\u20d2}"),
]
TEXT = [
    ("<mtext>넓이는 3 cm입니다</mtext>", "\\text{넓이는 3 cm입니다}"),
    ("<mi>넓이</mi><mo>=</mo><mn>3</mn>", "\\text{넓이}=3"),
    (
        "<mtext>a{b}$c &amp; 50% #1 a_b ^~\\</mtext>",
        "\\text{a\\{b\\}\\$c \\& 50\\% \\#1 a\\_b }\\hat{}{\\sim}\\backslash",
    ),
    ('<mtext mathvariant="bold">Note</mtext>', "\\textbf{Note}"),
    ("<ms>abc</ms>", "\\text{“abc”}"),
    (
        "<mn>5</mn><mi>cm</mi><mo>,</mo><mn>3</mn><msup><mi>cm</mi><mn>2</mn></msup>",
        "5\\operatorname{cm},3\\operatorname{cm}^2",
    ),
]
SCRIPTS_AND_FRACTIONS = [
    ("<mfrac><mn>1</mn><mn>2</mn></mfrac>", "\\frac{1}{2}"),
    ('<mfrac linethickness="0"><mi>n</mi><mi>k</mi></mfrac>', "{n \\atop k}"),
    (
        '<mrow><mo>(</mo><mfrac linethickness="0px"><mi>n</mi><mi>k</mi></mfrac><mo>)</mo></mrow>',
        "\\binom{n}{k}",
    ),
    ("<msqrt><mi>x</mi><mo>+</mo><mn>1</mn></msqrt>", "\\sqrt{x+1}"),
    ("<mroot><mi>x</mi><mn>3</mn></mroot>", "\\sqrt[3]{x}"),
    ("<msub><mi>a</mi><mi>n</mi></msub>", "a_n"),
    ("<msup><mi>x</mi><mn>10</mn></msup>", "x^{10}"),
    ("<msubsup><mi>x</mi><mn>1</mn><mn>2</mn></msubsup>", "x_1^2"),
    ("<msup><mrow><mi>a</mi><mi>b</mi></mrow><mn>2</mn></msup>", "{ab}^2"),
    ("<msup><msub><mi>x</mi><mn>1</mn></msub><mn>2</mn></msup>", "{x_1}^2"),
    ("<msup><mi>f</mi><mo>′</mo></msup><mo>(</mo><mi>x</mi><mo>)</mo>", "f'\\left(x\\right)"),
    ("<msup><mi>f</mi><mo>″</mo></msup>", "f''"),
    ("<mi>f</mi><mo>′</mo>", "f\\prime"),
    ("<msup><mn>30</mn><mo>∘</mo></msup>", "30^{\\circ}"),
    ("<mn>30</mn><mo>°</mo>", "30\\degree"),
    ("<mmultiscripts><mi>C</mi><mprescripts/><mn>6</mn><mn>14</mn></mmultiscripts>", "{}_6^{14}C"),
    ("<mmultiscripts><mi>R</mi><mi>i</mi><none/><none/><mi>j</mi></mmultiscripts>", "R_i{}^j"),
]
FENCES = [
    (
        "<mrow><mo>(</mo><mfrac><mi>a</mi><mi>b</mi></mfrac><mo>)</mo></mrow>",
        "\\left(\\frac{a}{b}\\right)",
    ),
    ("<mo>|</mo><mi>x</mi><mo>|</mo>", "\\left|x\\right|"),
    ("<mo>[</mo><mn>0</mn><mo>,</mo><mn>1</mn><mo>)</mo>", "\\left[0,1\\right)"),
    ('<mo stretchy="false">(</mo><mi>x</mi><mo stretchy="false">)</mo>', "(x)"),
    ("<mfenced><mi>a</mi><mi>b</mi></mfenced>", "\\left(a,b\\right)"),
    (
        '<mfenced open="[" close="]" separators=";"><mi>a</mi><mi>b</mi><mi>c</mi></mfenced>',
        "\\left[a;b;c\\right]",
    ),
    ('<mfenced open="{" close=""><mi>a</mi></mfenced>', "\\left\\{a\\right."),
    (
        '<mo minsize="1.2em" maxsize="1.2em">(</mo><mi>x</mi>'
        '<mo minsize="1.2em" maxsize="1.2em">)</mo>',
        "\\bigl(x\\bigr)",
    ),
    (
        '<mo>{</mo><mi>x</mi><mo stretchy="true">|</mo><mi>x</mi><mo>&gt;</mo><mn>0</mn><mo>}</mo>',
        "\\left\\{x\\middle|x>0\\right\\}",
    ),
    (
        "<mi>x</mi><mo>+</mo><mfrac><mn>2</mn><mn>3</mn></mfrac>"
        '<mo stretchy="true" form="postfix">)</mo>',
        "\\left.x+\\frac{2}{3}\\right)",
    ),
]
UNDER_OVER = [
    ("<mover><mi>x</mi><mo>^</mo></mover>", "\\hat{x}"),
    ("<mover><mrow><mi>A</mi><mi>B</mi></mrow><mo>¯</mo></mover>", "\\overline{AB}"),
    # MathJax stretches the arrow over one letter too: \vec draws a smaller, lower arrow
    ('<mover accent="true"><mi>v</mi><mo>→</mo></mover>', "\\overrightarrow{v}"),
    # a fixed-size bar (LibreOffice) is the narrow accent, whatever its base
    (
        '<mover accent="true"><mrow><mi>A</mi><mi>B</mi></mrow><mo stretchy="false">¯</mo></mover>',
        "\\bar{AB}",
    ),
    ("<mover><mrow><mi>A</mi><mi>B</mi></mrow><mo>→</mo></mover>", "\\overrightarrow{AB}"),
    ("<mover><mrow><mi>A</mi><mi>B</mi></mrow><mo>⏜</mo></mover>", "\\overparen{AB}"),
    ("<mover><mrow><mi>A</mi><mi>B</mi></mrow><mo>⌒</mo></mover>", "\\overset{⌒}{AB}"),
    ("<munder><mi>x</mi><mo>_</mo></munder>", "\\underline{x}"),
    ("<mover><mrow><mi>a</mi><mo>+</mo><mi>b</mi></mrow><mo>⏞</mo></mover>", "\\overbrace{a+b}"),
    ('<mover accent="false"><mo>(</mo><mo>-</mo></mover>', "\\overset{-}{(}"),
    (
        "<munderover><mo>∑</mo><mrow><mi>i</mi><mo>=</mo><mn>1</mn></mrow><mi>n</mi></munderover><mi>i</mi>",
        "\\sum_{i=1}^n i",
    ),
    ("<munderover><mo>∫</mo><mn>0</mn><mn>1</mn></munderover>", "\\int\\limits_0^1"),
    ("<msubsup><mo>∫</mo><mn>0</mn><mn>1</mn></msubsup>", "\\int_0^1"),
    (
        '<munder><mo movablelimits="true">lim</mo>'
        "<mrow><mi>x</mi><mo>→</mo><mn>0</mn></mrow></munder>",
        "\\lim_{x\\rightarrow0}",
    ),
    ("<munder><mi>max</mi><mi>x</mi></munder>", "\\max\\limits_x"),
    ("<msub><mo>∑</mo><mi>i</mi></msub>", "\\sum\\nolimits_i"),
    ("<munder><mi>x</mi><mi>y</mi></munder>", "\\underset{y}{x}"),
    ("<mover><mo>→</mo><mtext>heat</mtext></mover>", "\\xrightarrow{\\text{heat}}"),
    ("<munderover><mo>⇌</mo><mi>b</mi><mi>a</mi></munderover>", "\\xrightleftharpoons[b]{a}"),
    # an equals sign the source makes stretchy stretches under its scripts (extpfeil)
    ('<mover><mo stretchy="true">=</mo><mtext>def</mtext></mover>', "\\xlongequal{\\text{def}}"),
    (
        '<munderover><mo stretchy="true">=</mo><mi>b</mi><mi>a</mi></munderover>',
        "\\xlongequal[b]{a}",
    ),
    ("<mover><mo>=</mo><mi>x</mi></mover>", "\\overset{x}{=}"),
]
TABLES = [
    (
        "<mtable><mtr><mtd><mi>a</mi></mtd><mtd><mi>b</mi></mtd></mtr><mtr><mtd><mi>c</mi></mtd><mtd><mi>d</mi></mtd></mtr></mtable>",
        "\\begin{matrix}a & b \\\\ c & d\\end{matrix}",
    ),
    (
        "<mrow><mo>(</mo><mtable><mtr><mtd><mn>1</mn></mtd><mtd><mn>0</mn></mtd></mtr><mtr><mtd><mn>0</mn></mtd><mtd><mn>1</mn></mtd></mtr></mtable><mo>)</mo></mrow>",
        "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}",
    ),
    (
        "<mrow><mo>[</mo><mtable><mtr><mtd><mn>1</mn></mtd></mtr></mtable><mo>]</mo></mrow>",
        "\\begin{bmatrix}1\\end{bmatrix}",
    ),
    (
        "<mrow><mo>|</mo><mtable><mtr><mtd><mi>a</mi></mtd></mtr></mtable><mo>|</mo></mrow>",
        "\\begin{vmatrix}a\\end{vmatrix}",
    ),
    (
        '<mrow><mo>{</mo><mtable columnalign="left" rowspacing=".2em">'
        "<mtr><mtd><mi>x</mi><mo>+</mo><mi>y</mi><mo>=</mo><mn>1</mn></mtd></mtr>"
        "<mtr><mtd><mi>x</mi><mo>−</mo><mi>y</mi><mo>=</mo><mn>3</mn></mtd></mtr></mtable></mrow>",
        "\\begin{cases}x+y=1 \\\\ x-y=3\\end{cases}",
    ),
    (
        '<mtable columnalign="right left" rowspacing="3pt">'
        "<mtr><mtd><mi>x</mi></mtd><mtd><mo>=</mo><mn>1</mn></mtd></mtr>"
        "<mtr><mtd><mi>y</mi></mtd><mtd><mo>=</mo><mfrac><mn>1</mn><mn>2</mn></mfrac></mtd></mtr>"
        "</mtable>",
        "\\begin{aligned}x & =1 \\\\ y & \\textstyle =\\frac{1}{2}\\end{aligned}",
    ),
    (
        '<mtable columnlines="solid">'
        "<mtr><mtd><mi>a</mi></mtd><mtd><mi>b</mi></mtd></mtr></mtable>",
        "\\begin{array}{c|c}a & b\\end{array}",
    ),
    (
        '<mtable rowspacing="2em">'
        "<mtr><mtd><mi>a</mi></mtd></mtr><mtr><mtd><mi>b</mi></mtd></mtr></mtable>",
        "\\begin{matrix}a \\\\[1.6em] b\\end{matrix}",
    ),
    (
        '<mtable><mtr><mtd columnalign="left"><mi>a</mi></mtd></mtr>'
        '<mtr><mtd columnalign="left"><mi>bc</mi></mtd></mtr></mtable>',
        "\\begin{array}{l}a \\\\ \\operatorname{bc}\\end{array}",
    ),
    # a solid frame is the box \boxed draws (MathLive has no \hline), column lines kept;
    # a space inside the box keeps the frame as far out as the table's framespacing says
    # (0.4em by default: 0.2em more than \boxed's own padding)
    (
        '<mtable frame="solid" columnlines="solid"><mtr><mtd><mn>7</mn></mtd><mtd><mi>k</mi></mtd>'
        "</mtr></mtable>",
        "\\boxed{\\:\\begin{array}{c|c}7 & k\\end{array}\\:}",
    ),
    (
        '<mrow><mo>(</mo><mtable frame="solid"><mtr><mtd><mi>p</mi></mtd></mtr>'
        "<mtr><mtd><mi>q</mi></mtd></mtr></mtable><mo>)</mo></mrow>",
        "\\left(\\boxed{\\:\\begin{array}{c}p \\\\ q\\end{array}\\:}\\right)",
    ),
    # nested framed tables, each frame at its own framespacing (.5em: MathJax's arrays)
    (
        '<mtable frame="solid" framespacing=".5em .125em" columnlines="solid"><mtr><mtd>'
        '<mtable frame="solid" framespacing=".5em .125em"><mtr><mtd><mi>a</mi></mtd></mtr>'
        "</mtable></mtd><mtd><mi>X</mi></mtd></mtr></mtable>",
        "\\boxed{\\;\\begin{array}{c|c}\\boxed{\\;\\begin{matrix}a\\end{matrix}\\;} & X"
        "\\end{array}\\;}",
    ),
    # a table whose first or last row sits on the baseline (TeX's [t], [b]): aligned keeps it
    (
        '<mi>x</mi><mo>=</mo><mtable align="baseline -1" columnalign="right">'
        "<mtr><mtd><mi>p</mi></mtd></mtr><mtr><mtd><mi>q</mi></mtd></mtr></mtable>",
        "x=\\begin{aligned}[b]p \\\\ q\\end{aligned}",
    ),
    (
        '<mtable align="baseline 1" columnalign="right left"><mtr><mtd><mi>p</mi></mtd>'
        "<mtd><mo>=</mo><mn>1</mn></mtd></mtr><mtr><mtd><mi>q</mi></mtd><mtd><mo>=</mo>"
        "<mn>2</mn></mtd></mtr></mtable>",
        "\\begin{aligned}[t]p & =1 \\\\ q & =2\\end{aligned}",
    ),
    # (centred columns: no environment MathLive reads takes the option; the rows stay)
    (
        '<mtable align="baseline -1"><mtr><mtd><mi>p</mi></mtd></mtr>'
        "<mtr><mtd><mi>q</mi></mtd></mtr></mtable>",
        "\\begin{matrix}p \\\\ q\\end{matrix}",
    ),
    # a framespacing no wider than \boxed's padding adds no space
    (
        '<mtable frame="solid" framespacing="0.2em 0ex"><mtr><mtd><mi>a</mi></mtd></mtr></mtable>',
        "\\boxed{\\begin{matrix}a\\end{matrix}}",
    ),
]
ENCLOSURES_AND_STYLES = [
    # MathML 4's compass name for the diagonal arrow, which MathLive draws by its old name
    (
        '<menclose notation="northeastarrow updiagonalstrike"><mi>m</mi></menclose>',
        "\\enclose{updiagonalarrow updiagonalstrike}{m}",
    ),
    ('<menclose notation="box"><mi>x</mi></menclose>', "\\boxed{x}"),
    ('<menclose notation="updiagonalstrike"><mi>x</mi></menclose>', "\\cancel{x}"),
    (
        '<menclose notation="updiagonalstrike downdiagonalstrike"><mi>x</mi></menclose>',
        "\\xcancel{x}",
    ),
    ('<menclose notation="circle"><mi>x</mi></menclose>', "\\enclose{circle}{x}"),
    ("<menclose><mn>12</mn></menclose>", "\\enclose{longdiv}{12}"),
    ('<menclose notation="radical"><mi>x</mi></menclose>', "\\sqrt{x}"),
    (
        '<mstyle displaystyle="true"><mfrac><mn>1</mn><mn>2</mn></mfrac></mstyle>',
        "{\\displaystyle \\frac{1}{2}}",
    ),
    ('<mstyle scriptlevel="1"><mi>x</mi></mstyle>', "{\\scriptstyle x}"),
    ('<mstyle mathcolor="red"><mi>x</mi></mstyle>', "\\textcolor{red}{x}"),
    ('<mstyle mathcolor="#00f"><mi>x</mi></mstyle>', "\\textcolor{#0000FF}{x}"),
    # a coloured box padded equally on all sides is \bbox with that padding
    (
        '<mstyle mathbackground="yellow"><mpadded height="+2pt" depth="+2pt" lspace="2pt" '
        'width="+4pt"><mi>x</mi></mpadded></mstyle>',
        "\\bbox[yellow,2pt]{x}",
    ),
    (
        '<mpadded mathbackground="#ff0" height="+.2em" depth="+.2em" lspace=".2em" '
        'width="+.4em"><mi>x</mi><mo>+</mo><mn>1</mn></mpadded>',
        "\\bbox[#FFFF00,0.2em]{x+1}",
    ),
    # padded unevenly: the colour only (\bbox has one padding for all four sides)
    (
        '<mstyle mathbackground="yellow"><mpadded height="+2pt" depth="+2pt" lspace="2pt" '
        'width="+3pt"><mi>x</mi></mpadded></mstyle>',
        "\\bbox[yellow]{x}",
    ),
    ('<mi mathsize="big">x</mi>', "{\\huge x}"),
    ('<mpadded voffset="0.5em"><mi>x</mi></mpadded>', "\\raise{0.5em}{x}"),
    ('<mpadded width="0"><mi>x</mi></mpadded>', "\\mathrlap{x}"),
    # absolute lengths keep the author's unit: MathJax draws LaTeX's cm as MathML's cm
    ('<mpadded voffset="-4mm"><mi>t</mi></mpadded>', "\\lower{4mm}{t}"),
    ('<mi>u</mi><mspace width="1.5cm"/><mi>w</mi>', "u\\hspace{1.5cm}w"),
    (
        '<mspace width="3cm" height="5mm" depth="2mm" mathbackground="black"/>',
        "\\rule[-2mm]{3cm}{7mm}",
    ),
    # an empty box of a fixed width still takes that width
    (
        '<menclose notation="box"><mpadded width="2.5cm"></mpadded></menclose>',
        "\\boxed{\\hspace{2.5cm}}",
    ),
    # a stretchy arrow with a minimum size, in a row of text height, is drawn at that size
    (
        '<mtable><mtr><mtd><mo minsize="1.9em">&#x2191;</mo><mi>f</mi></mtd></mtr></mtable>',
        "\\begin{matrix}\\bigg\\uparrow f\\end{matrix}",
    ),
    (
        '<mo minsize="1.9em">&#x2191;</mo><mfrac><mi>f</mi><mi>g</mi></mfrac>',
        "\\uparrow\\frac{f}{g}",
    ),
    ("<mphantom><mi>x</mi></mphantom><mi>y</mi>", "\\phantom{x}y"),
    (
        '<semantics><mi>x</mi><annotation encoding="application/x-tex">y</annotation></semantics>',
        "x",
    ),
    ('<maction actiontype="toggle" selection="2"><mi>a</mi><mi>b</mi></maction>', "b"),
    ("", "{}"),
]
SCHOOL = [
    (
        "<mi>x</mi><mo>∥</mo><mi>y</mi><mo>,</mo><mo>∠</mo><mi>A</mi><mo>=</mo><msup><mn>90</mn><mo>∘</mo></msup>"
        "<mo>,</mo><mo>△</mo><mi>ABC</mi><mo>∽</mo><mo>△</mo><mi>DEF</mi>",
        "x\\parallel y,\\angle A=90^{\\circ},"
        "\\triangle\\operatorname{ABC}\\backsim\\triangle\\operatorname{DEF}",
    ),
    (
        "<mover><mrow><mi>A</mi><mi>B</mi></mrow><mo>¯</mo></mover><mo>⊥</mo><mover><mrow><mi>C</mi><mi>D</mi></mrow><mo>¯</mo></mover>",
        "\\overline{AB}\\bot\\overline{CD}",
    ),
]
ALL = (
    TOKENS
    + TEXT
    + SCRIPTS_AND_FRACTIONS
    + FENCES
    + UNDER_OVER
    + TABLES
    + ENCLOSURES_AND_STYLES
    + SCHOOL
)


@pytest.mark.parametrize(("mathml", "latex"), ALL)
def test_converts(mathml, latex):
    assert convert(mathml) == latex


@pytest.mark.parametrize(("mathml", "latex"), ALL)
def test_outputs_are_mathlive_latex(mathml, latex):
    assert syntax_problems(convert(mathml)) == []


@pytest.mark.parametrize(("mathml", "latex"), ALL)
def test_outputs_use_no_forbidden_command(mathml, latex):
    assert forbidden_commands(convert(mathml)) == []


def test_dev_corpus_outputs_use_no_forbidden_command():
    corpus = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "mathml_dev.jsonl"
    if not corpus.exists():
        corpus = Path("/work/shared/corpus/mathml_dev.jsonl")
    if not corpus.exists():
        pytest.skip("the shared dev corpus is not on this machine")
    refused = []
    for line in corpus.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        case = json.loads(line)
        try:
            latex = mathml_to_latex(case["mathml"])
        except ConversionError:
            continue
        if forbidden_commands(latex):
            refused.append((case["id"], latex))
    assert refused == []


@pytest.mark.parametrize("text", ["a^b", "a~b", "x^2~y\\z", "^", "~"])
def test_carets_and_tildes_in_text_are_written_so_the_validator_accepts_them(text):
    mathml = f"<math><mtext>{text}</mtext></math>"
    latex = mathml_to_latex(mathml)
    assert "\\unicode" not in latex
    assert validate(mathml, latex).ok
    assert account(mathml, latex) == []


@pytest.mark.parametrize(
    ("mathml", "reason"),
    [
        (
            "<mtable><mlabeledtr><mtd><mtext>(1)</mtext></mtd><mtd><mi>a</mi></mtd></mlabeledtr></mtable>",
            "equation labels",
        ),
        (
            '<mtable rowlines="solid">'
            "<mtr><mtd><mi>a</mi></mtd></mtr><mtr><mtd><mi>b</mi></mtd></mtr></mtable>",
            "rowlines",
        ),
        ('<mtable frame="dashed"><mtr><mtd><mi>a</mi></mtd></mtr></mtable>', "frame drawn"),
        ('<mtable><mtr><mtd columnspan="2"><mi>a</mi></mtd></mtr></mtable>', "spanning"),
        ('<menclose notation="southwestarrow"><mi>x</mi></menclose>', "southwestarrow"),
        ("<merror><mtext>oops</mtext></merror>", "<merror>"),
        ('<mi><mglyph src="x.png" alt="x"/></mi>', "<mglyph>"),
        ("<apply><int/><ci>f</ci></apply>", "content MathML <int> is not converted"),
        ("<foo>x</foo>", "unsupported element <foo>"),
        ("<mfrac><mn>1</mn></mfrac>", "<mfrac> needs 2 children, it has 1"),
        ("<mrow>loose text</mrow>", "text 'loose text' directly inside <mrow>"),
        # a mark without a LaTeX accent on a Latin letter: as text it would lose the italic
        ("<mi>x&#x5BC;</mi>", "U+05BC"),
    ],
)
def test_refuses_what_it_cannot_write_faithfully(mathml, reason):
    with pytest.raises(ConversionError) as caught:
        convert(mathml)
    assert reason in str(caught.value)
    assert not isinstance(caught.value, InvalidMathML)


# ---------------------------------------------------------------- parsing untrusted input

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE math [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<math><mi>&lol3;</mi></math>"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, "DOCTYPE with entity declarations is not allowed (possible XML bomb)"),
        (
            '<!DOCTYPE math SYSTEM "file:///etc/passwd" [<!ENTITY x SYSTEM "file:///etc/passwd">]><math><mi>&x;</mi></math>',
            "possible XML bomb",
        ),
        ('<math><mi>x</mi></math><!ENTITY x "y">', "entity declarations are not allowed"),
        ("<math><mi>&foo;</mi></math>", "unknown entity &foo;"),
        ("<math><mi>x</mi>", "not well-formed XML"),
        ("<math><mfenced close></mfenced></math>", "not well-formed XML"),
        ("<root><mi>x</mi></root>", "the root element is <root>, not <math>"),
        ("<mrow><mi>x</mi></mrow>", "the root element is <mrow>, not <math>"),
        (
            "<root><math><mi>a</mi></math><math><mi>b</mi></math></root>",
            "<root> holds 2 <math> elements, not one",
        ),
        ("   ", "empty input"),
        (b"<math><mi>\xff</mi></math>", "not UTF-8"),
    ],
)
def test_bad_input_is_refused_with_a_readable_reason(text, message):
    with pytest.raises(InvalidMathML) as caught:
        parse_mathml(text)
    assert message in str(caught.value)


def test_entity_expansion_never_happens():
    # Even the converter entry point refuses before any entity is expanded.
    with pytest.raises(InvalidMathML, match="XML bomb"):
        mathml_to_latex(BILLION_LAUGHS)


def test_size_limit():
    big = "<math>" + "<mi>x</mi>" * 1000 + "</math>"
    assert mathml_to_latex(big, max_bytes=len(big)) == "x" * 1000
    with pytest.raises(InvalidMathML, match=r"too big: 10,013 bytes \(the limit is 10,000\)"):
        parse_mathml(big, max_bytes=10_000)
    korean = "<math><mtext>" + "가" * 3000 + "</mtext></math>"  # 3 bytes a character
    with pytest.raises(InvalidMathML, match="too big"):
        parse_mathml(korean, max_bytes=len(korean) + 10)


def test_depth_limit():
    nested = "<math>" + "<mrow>" * 20 + "<mi>x</mi>" + "</mrow>" * 20 + "</math>"
    assert mathml_to_latex(nested, max_depth=22) == "x"
    with pytest.raises(InvalidMathML, match="too deep: nesting exceeds 21 levels"):
        parse_mathml(nested, max_depth=21)
    very_deep = "<math>" + "<mrow>" * 5000 + "</mrow>" * 5000 + "</math>"
    with pytest.raises(InvalidMathML, match="too deep"):
        parse_mathml(very_deep, max_depth=10_000)


def test_limits_come_from_settings(settings):
    settings.MATHCONV_MAX_MATHML_BYTES = 50
    settings.MATHCONV_MAX_MATHML_DEPTH = 3
    assert default_limits() == (50, 3)
    with pytest.raises(InvalidMathML, match="too big"):
        mathml_to_latex("<math>" + "<mi>x</mi>" * 10 + "</math>")
    settings.MATHCONV_MAX_MATHML_BYTES = 1000
    with pytest.raises(InvalidMathML, match="too deep"):
        mathml_to_latex("<math><mrow><mrow><mrow><mi>x</mi></mrow></mrow></mrow></math>")


@pytest.mark.parametrize(
    "text",
    [
        "<math><mi>x</mi></math>",
        f"<math {NS}><mi>x</mi></math>",
        '<m:math xmlns:m="http://www.w3.org/1998/Math/MathML"><m:mi>x</m:mi></m:math>',
        '<mml:math xmlns:mml="http://www.w3.org/1998/Math/MathML"><mml:mrow><mml:mi>x</mml:mi></mml:mrow></mml:math>',
        "<m:math><m:mi>x</m:mi></m:math>",  # the prefix was declared by the page it came from
        '<?xml version="1.0" encoding="UTF-8"?>\n<math><mi>x</mi></math>',
        '<?xml version="1.0" encoding="ISO-8859-1"?><math><mi>x</mi></math>',
        '<!DOCTYPE math PUBLIC "-//W3C//DTD MathML 2.0//EN" "http://www.w3.org/Math/DTD/mathml2/mathml2.dtd"><math><mi>x</mi></math>',
        "<root>\n<math><mi>x</mi></math>\n</root>",
        b"<math><mi>x</mi></math>",
        "<math><!-- a comment --><mi>x</mi><?pi data?></math>",
    ],
)
def test_accepted_spellings_of_the_same_formula(text):
    assert mathml_to_latex(text) == "x"


def test_named_entities_are_characters_not_expansions():
    assert (
        convert("<mi>&alpha;</mi><mo>&InvisibleTimes;</mo><mi>&beta;</mi><mo>&lt;</mo><mn>1</mn>")
        == "\\alpha\\beta<1"
    )


def test_normalized_mathml_is_the_same_for_the_same_formula():
    a = normalize_mathml(
        f'<math {NS} display="block"><mrow id="r1">'
        "<mi> x </mi><mo>+</mo>\n  <mn>1</mn></mrow></math>"
    )
    b = normalize_mathml(
        '<?xml version="1.0"?><m:math display="block" xmlns:m="http://www.w3.org/1998/Math/MathML">'
        '<m:mrow class="c" data-x="1"><m:mi>x</m:mi><m:mo>+</m:mo><m:mn>1</m:mn></m:mrow></m:math>'
    )
    assert a == b == '<math display="block"><mrow><mi>x</mi><mo>+</mo><mn>1</mn></mrow></math>'
    assert normalize_mathml('<math><mi mathvariant="bold" mathcolor="red">x</mi></math>') == (
        '<math><mi mathcolor="red" mathvariant="bold">x</mi></math>'
    )
    assert normalize_mathml("<math><mn>2</mn></math>") != normalize_mathml(
        "<math><mn>3</mn></math>"
    )
    assert normalize_mathml("<math><mi>&lt;</mi></math>") == "<math><mi>&lt;</mi></math>"
    with pytest.raises(InvalidMathML):
        normalize_mathml("<root/>")


# ---------------------------------------------------------------- robustness

_CONTAINERS = [
    "mrow",
    "mfrac",
    "msqrt",
    "mroot",
    "msub",
    "msup",
    "msubsup",
    "munder",
    "mover",
    "munderover",
    "mstyle",
    "mpadded",
    "mphantom",
    "mfenced",
    "menclose",
    "mtable",
    "mtr",
    "mtd",
    "mmultiscripts",
    "mprescripts",
    "none",
    "semantics",
    "maction",
    "mspace",
]
_TOKENS = ("mi", "mn", "mo", "mtext", "ms")
_TEXTS = ("x", "12", "+", "(", ")", "{", "|", "∑", "→", "^", "¯", "sin", "가", "⏞", "′", "&lt;")
_TEXTS += ("\\", "%", "#", "~", "", "ɱ", "•", "𝐱", "≮", "x\u0301", "\u20d2")
_ATTRIBUTES = (
    ("mathvariant", ("bold", "normal", "double-struck", "sans-serif-italic", "bold-fraktur")),
    ("stretchy", ("true", "false")),
    ("linethickness", ("0", "2px")),
    ("accent", ("true", "false")),
    ("scriptlevel", ("1", "+1", "-1")),
    ("mathcolor", ("red", "#abc", "bogus")),
    ("mathbackground", ("yellow",)),
    ("notation", ("box", "circle", "foo")),
    ("columnalign", ("left", "right center")),
    ("columnlines", ("solid",)),
    ("rowspacing", ("2em", "x")),
    ("open", ("[", "")),
    ("minsize", ("1.2em",)),
    ("width", ("0", "1em", "-1em")),
    ("form", ("prefix", "postfix")),
)


def _random_mathml(rng, depth=0):
    attributes = "".join(
        f' {name}="{rng.choice(values)}"'
        for name, values in rng.sample(_ATTRIBUTES, rng.randrange(3))
    )
    if depth > 4 or rng.random() < 0.35:
        tag = rng.choice(_TOKENS)
        return f"<{tag}{attributes}>{rng.choice(_TEXTS)}</{tag}>"
    tag = rng.choice(_CONTAINERS)
    children = "".join(_random_mathml(rng, depth + 1) for _ in range(rng.randrange(5)))
    return f"<{tag}{attributes}>{children}</{tag}>"


def test_any_presentation_mathml_converts_or_fails_with_a_reason():
    rng = random.Random(2024)
    converted = 0
    for _ in range(400):
        mathml = f"<math>{_random_mathml(rng)}{_random_mathml(rng)}</math>"
        try:
            latex = mathml_to_latex(mathml)
        except ConversionError as exc:
            assert str(exc)
            continue
        converted += 1
        assert syntax_problems(latex) == [], (mathml, latex)
    assert converted > 100
