"""Validation of LaTeX results against their MathML (syntax and round trip; no database)."""

import random

import pytest

from conversions.converters import VALIDATION_THRESHOLD, mathml_to_latex, validate
from conversions.converters.validate import syntax_problems
from mathconv_dev.fakeopenai.answers import MUTATIONS, wrong_latex

QUADRATIC = (
    "<math><mi>x</mi><mo>=</mo><mfrac><mrow><mo>−</mo><mi>b</mi><mo>±</mo><msqrt><msup><mi>b</mi>"
    "<mn>2</mn></msup><mo>−</mo><mn>4</mn><mi>a</mi><mi>c</mi></msqrt></mrow><mrow><mn>2</mn>"
    "<mi>a</mi></mrow></mfrac></math>"
)
FORMULAS = [
    QUADRATIC,
    "<math><mfrac><mn>3</mn><mn>7</mn></mfrac><mo>+</mo><msup><mi>x</mi><mn>2</mn></msup><mo>=</mo><mn>10</mn></math>",
    "<math><mroot><mrow><mi>x</mi><mo>+</mo><mn>1</mn></mrow><mn>3</mn></mroot><mo>≤</mo><mn>5</mn></math>",
    '<math><mrow><mo>{</mo><mtable rowspacing=".2em">'
    "<mtr><mtd><mn>2</mn><mi>x</mi><mo>+</mo><mi>y</mi><mo>=</mo><mn>7</mn></mtd></mtr>"
    "<mtr><mtd><mi>x</mi><mo>−</mo><mi>y</mi><mo>=</mo><mn>2</mn></mtd></mtr></mtable></mrow></math>",
    "<math><munderover><mo>∑</mo><mrow><mi>k</mi><mo>=</mo><mn>1</mn></mrow><mi>n</mi></munderover>"
    "<msup><mi>k</mi><mn>2</mn></msup><mo>=</mo><mfrac><mrow><mi>n</mi><mo>(</mo><mi>n</mi><mo>+</mo><mn>1</mn>"
    "<mo>)</mo></mrow><mn>6</mn></mfrac></math>",
    "<math><mtext>넓이</mtext><mo>=</mo><mn>3</mn><mo>×</mo><mn>4</mn><mo>=</mo><mn>12</mn>"
    '<mspace width="0.2em"/><msup><mi>cm</mi><mn>2</mn></msup></math>',
    "<math><mover><mrow><mi>A</mi><mi>B</mi></mrow><mo>¯</mo></mover><mo>=</mo><msqrt><mn>13</mn></msqrt>"
    "<mo>,</mo><mo>∠</mo><mi>A</mi><mo>=</mo><msup><mn>60</mn><mo>∘</mo></msup></math>",
]


@pytest.mark.parametrize("mathml", FORMULAS)
def test_the_converters_own_results_pass(mathml):
    check = validate(mathml, mathml_to_latex(mathml))
    assert (check.ok, check.score, check.syntax_ok, check.reasons) == (True, 1.0, True, [])


@pytest.mark.parametrize(
    ("mathml", "latex"),
    [
        (QUADRATIC, "x = \\frac{-b \\pm \\sqrt{b^{2} - 4ac}}{2a}"),
        (QUADRATIC, "x=\\dfrac{-b\\pm\\sqrt{b^2-4ac}}{2a}"),
        (FORMULAS[1], "\\tfrac{3}{7}+x^{2}=10"),
        (FORMULAS[3], "\\left\\{\\begin{array}{l}2x+y=7\\\\x-y=2\\end{array}\\right."),
        (FORMULAS[6], "\\overline{AB}=\\sqrt{13},\\,\\angle A=60^\\circ"),
    ],
)
def test_other_correct_spellings_pass(mathml, latex):
    check = validate(mathml, latex)
    assert check.ok, check.reasons
    assert check.score == 1.0


@pytest.mark.parametrize(
    ("latex", "reason"),
    [
        ("x=\\frac{2a}{-b\\pm\\sqrt{b^2-4ac}}", "the LaTeX adds “2 a /” after “x = frac(”"),
        ("x=\\frac{-b\\pm\\sqrt{b-4ac}}{2a}", "the LaTeX lacks “^( 2 )” after “± sqrt( b”"),
        (
            "x=\\frac{-b\\pm\\sqrt{b^2-5ac}}{2a}",
            "the LaTeX has “5” where the MathML has “4” after “2 ) -”",
        ),
        (
            "x=\\frac{-b+\\sqrt{b^2-4ac}}{2a}",
            "the LaTeX has “+” where the MathML has “±” after “frac( - b”",
        ),
        ("x=\\frac{-b\\pm b^2-4ac}{2a}", "the LaTeX lacks “sqrt(” after “- b ±”"),
    ],
    ids=["swapped fraction", "lost exponent", "changed digit", "changed operator", "dropped root"],
)
def test_wrong_answers_are_caught_with_the_reason(latex, reason):
    check = validate(QUADRATIC, latex)
    assert check.syntax_ok
    assert not check.ok
    assert check.score < VALIDATION_THRESHOLD
    assert reason in check.reasons


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda m: m.__name__)
def test_the_fake_servers_wrong_answers_are_caught(mutate):
    applied = 0
    for mathml in FORMULAS:
        correct = mathml_to_latex(mathml)
        wrong = mutate(correct, random.Random(7))
        if wrong is None or wrong == correct:
            continue  # this mutation has nothing to change in this formula
        applied += 1
        check = validate(mathml, wrong)
        assert not check.ok, wrong
        assert check.reasons
    assert applied >= 2


def test_wrong_latex_never_passes():
    for seed in range(20):
        for mathml in FORMULAS:
            wrong = wrong_latex(mathml_to_latex(mathml), random.Random(seed))
            assert not validate(mathml, wrong).ok, wrong


def test_one_error_in_a_long_formula_is_still_below_the_threshold():
    terms = "".join(f"<mo>+</mo><msup><mi>x</mi><mn>{n}</mn></msup>" for n in range(2, 40))
    mathml = f"<math><mn>1</mn>{terms}</math>"
    latex = mathml_to_latex(mathml)
    assert validate(mathml, latex).score == 1.0
    changed = validate(mathml, latex.replace("x^{17}", "x^{18}"))
    assert 0.8 < changed.score < VALIDATION_THRESHOLD
    assert not changed.ok


@pytest.mark.parametrize(
    ("latex", "problem"),
    [
        ("a+\\dots+b", "\\dots is not a command MathLive knows"),
        ("x\\tag{1}", "\\tag is not a command MathLive knows"),
        ("\\begin{array}{c}a\\\\\\hline b\\end{array}", "\\hline is not a command MathLive knows"),
        ("\\frac{1}{2", '1 "{" not closed'),
        ("x}", 'an extra "}"'),
        ("\\left(x", "\\left without \\right"),
        ("x\\right)", "\\right without \\left"),
        ("{\\left(x}\\right)", "\\left without \\right"),
        ("\\begin{matrix}a", "\\begin{matrix} without \\end{matrix}"),
        ("\\begin{matrix}a\\end{pmatrix}", "\\end{pmatrix} does not close the open environment"),
        ("\\begin{CD}a\\end{CD}", "the environment CD is not one MathLive knows"),
        ("a & b", '"&" outside an environment'),
        ("a \\\\ b", "\\\\ (a new line) outside an environment"),
        ("50%", "an unescaped % comments out the rest of the LaTeX"),
        ("\\left/ x \\right/", "\\left with /, not a delimiter MathLive accepts"),
        ("a•b", "MathLive does not accept '•' in math mode"),
        ("", "the LaTeX is empty"),
    ],
)
def test_syntax_problems(latex, problem):
    assert problem in syntax_problems(latex)


@pytest.mark.parametrize(
    "latex",
    [
        "\\text{\\dots and 50\\% \\#1 \\& \\tag}",  # text mode: MathLive takes any text there
        "\\textcolor{#FF0000}{x}",
        "\\begin{pmatrix}a & b \\\\[2pt] c & d\\end{pmatrix}",
        "\\left\\{x\\middle|x>0\\right\\}",
        "\\sqrt[3]{x}+\\operatorname{area}\\,\\mathbb{R}",
    ],
)
def test_valid_latex_has_no_syntax_problems(latex):
    assert syntax_problems(latex) == []


def test_syntax_error_fails_even_when_the_round_trip_agrees():
    check = validate("<math><mi>x</mi><mo>…</mo></math>", "x\\dots")
    assert check.score == 1.0
    assert (check.ok, check.syntax_ok) == (False, False)
    assert check.reasons == ["\\dots is not a command MathLive knows"]


def test_unusable_source_or_unreadable_latex_scores_zero():
    bad_source = validate("<root/>", "x")
    assert (bad_source.ok, bad_source.score) == (False, 0.0)
    assert (
        "the source MathML is not usable: the root element is <root>, not <math>"
        in bad_source.reasons
    )
    unreadable = validate("<math><mi>x</mi></math>", "x^")
    assert (unreadable.ok, unreadable.score) == (False, 0.0)
    assert any(
        r.startswith("the LaTeX could not be converted back to MathML") for r in unreadable.reasons
    )


def test_a_lower_threshold_is_the_callers_choice():
    mathml = "<math><mi>x</mi><mo>+</mo><mn>1</mn></math>"
    assert not validate(mathml, "x+2").ok
    assert validate(mathml, "x+2", threshold=0.5).ok
