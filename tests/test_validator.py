"""Validation of LaTeX results against their MathML (syntax and round trip; no database)."""

import random

import pytest
from django.utils import translation

from conversions import reviews
from conversions.converters import VALIDATION_THRESHOLD, mathml_to_latex, validate
from conversions.converters.commands import forbidden_commands
from conversions.converters.validate import syntax_problems
from conversions.models import Item
from mathconv_dev.fakeopenai.answers import MUTATIONS, wrong_latex
from tests.adminutil import make_job, set_items, staff_user
from tests.jobutil import make_questions

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
    '<math><mtable frame="solid"><mtr><mtd><mi>s</mi></mtd><mtd><mn>9</mn></mtd></mtr>'
    "</mtable></math>",
]


def test_a_framed_table_needs_its_box():
    framed = '<math><mtable frame="solid"><mtr><mtd><mi>s</mi></mtd></mtr></mtable></math>'
    assert validate(framed, "\\boxed{\\begin{matrix}s\\end{matrix}}").ok
    assert not validate(framed, "\\begin{matrix}s\\end{matrix}").ok


def test_a_framed_tables_framespacing_is_a_space_the_source_draws():
    wide = (
        '<math><mtable frame="solid" framespacing="4em 1ex"><mtr><mtd><mi>s</mi></mtd></mtr>'
        "</mtable></math>"
    )
    assert mathml_to_latex(wide) == (
        "\\boxed{\\hspace{3.8em}\\begin{matrix}s\\end{matrix}\\hspace{3.8em}}"
    )
    assert validate(wide, mathml_to_latex(wide)).ok
    # without a frame the same space is one the source does not draw
    plain = "<math><mtable><mtr><mtd><mi>s</mi></mtd></mtr></mtable></math>"
    assert not validate(plain, "\\hspace{3.8em}\\begin{matrix}s\\end{matrix}").ok


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
        (
            "x=\\frac{2a}{-b\\pm\\sqrt{b^2-4ac}}",
            "the numerator -b±√(b^2-4ac) and the denominator 2a are swapped",
        ),
        ("x=\\frac{-b\\pm\\sqrt{b-4ac}}{2a}", "the exponent 2 of b is missing"),
        ("x=\\frac{-b\\pm\\sqrt{b^2-5ac}}{2a}", "“5” instead of “4” under the square root"),
        ("x=\\frac{-b+\\sqrt{b^2-4ac}}{2a}", "“+” instead of “±” in the numerator"),
        ("x=\\frac{-b\\pm b^2-4ac}{2a}", "the root sign is missing in the numerator"),
        ("x<\\frac{-b\\pm\\sqrt{b^2-4ac}}{2a}", "“<” instead of “=” after x"),
        ("x=\\frac{-b\\pm\\sqrt{b^2-4ac}}{2c}", "“c” instead of “a” in the denominator"),
        ("x=\\frac{-b\\pm\\sqrt{b^2}}{2a}", "“-4ac” is missing under the square root"),
        (
            "x=\\frac{-b\\pm\\sqrt{b_2-4ac}}{2a}",
            "b has a subscript where the source has an exponent",
        ),
        (
            "x=\\frac{-b\\pm\\sqrt{b^2-4ac}}{2\\mathrm{a}}",
            "a is upright where the source draws it italic in the denominator",
        ),
        (
            "\\mathbf{x}=\\frac{-b\\pm\\sqrt{b^2-4ac}}{2a}",
            "x is bold where the source draws it italic",
        ),
        (
            "\\text{x}=\\frac{-b\\pm\\sqrt{b^2-4ac}}{2a}",
            "x is upright where the source draws it italic",
        ),
        (
            "\\boldsymbol{x}=\\frac{-b\\pm\\sqrt{b^2-4ac}}{2a}",
            "x is bold italic where the source draws it italic",
        ),
    ],
    ids=[
        "swapped fraction",
        "lost exponent",
        "changed digit",
        "changed operator",
        "dropped root",
        "changed relation",
        "changed letter",
        "dropped term",
        "subscript for exponent",
        "upright",
        "bold",
        "text",
        "bold italic",
    ],
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
    assert "the LaTeX cannot be read back" in unreadable.reasons


def test_a_lower_threshold_is_the_callers_choice():
    mathml = "<math><mi>x</mi><mo>+</mo><mn>1</mn></math>"
    assert not validate(mathml, "x+2").ok
    assert validate(mathml, "x+2", threshold=0.5).ok


SIN = (
    "<math><mi>sin</mi><mi>x</mi><mo>+</mo><msup><mi>f</mi><mo>′</mo></msup>"
    "<mo>(</mo><mi>x</mi><mo>)</mo></math>"
)


@pytest.mark.parametrize(
    ("latex", "reason"),
    [
        ("sin x+f'(x)", "sin is italic where the source draws it upright"),
        ("\\sin x+f(x)", "the prime of f is missing"),
        ("\\sin x+f'[x]", "the bracket “[” instead of “(” after +f′"),
        ("\\sin x+f'(x)", None),
        ("\\operatorname{sin}x+f^{\\prime}(x)", None),
    ],
    ids=["italic function name", "lost prime", "wrong fence", "right", "right, other spelling"],
)
def test_style_primes_and_fences(latex, reason):
    check = validate(SIN, latex)
    if reason is None:
        assert (check.ok, check.reasons) == (True, [])
    else:
        assert not check.ok
        assert reason in check.reasons


@pytest.mark.parametrize(
    ("mathml", "latex"),
    [
        ("<math><mi mathvariant='normal'>d</mi><mi>x</mi></math>", "\\mathrm{d}x"),
        ("<math><mi mathvariant='bold'>v</mi></math>", "\\mathbf{v}"),
        ("<math><mi>𝐯</mi></math>", "\\mathbf{v}"),
        ("<math><mi mathvariant='double-struck'>R</mi></math>", "\\mathbb{R}"),
        ("<math><mtext>넓이</mtext><mo>=</mo><mn>6</mn></math>", "\\text{넓이}=6"),
        ("<math><mi>Γ</mi></math>", "\\mathit{\\Gamma}"),
        ("<math><mi mathvariant='normal'>Γ</mi></math>", "\\Gamma"),
    ],
)
def test_styles_that_agree_pass(mathml, latex):
    check = validate(mathml, latex)
    assert (check.ok, check.reasons) == (True, [])


def test_an_upright_capital_greek_letter_is_not_the_italic_one():
    check = validate("<math><mi>Γ</mi></math>", "\\Gamma")
    assert not check.ok
    assert check.reasons == ["Γ is upright where the source draws it italic"]


X_1026 = "<math><mi>x</mi><mo>+</mo><mn>1026</mn></math>"


@pytest.mark.parametrize(
    ("latex", "reason"),
    [
        ("x+\\frac{1026}", "argument 2 of \\frac is missing"),
        ("x+\\sqrt", "argument 1 of \\sqrt is missing"),
        ("x+\\frac{1026}\\right)", "argument 2 of \\frac is missing"),
        (
            "\\href{javascript:alert(1)}{x}+1026",
            "the LaTeX uses \\href, which may link, style or script",
        ),
        ("\\class{x}{x}+1026", "the LaTeX uses \\class, which may link, style or script"),
        ("\\style{color:red}{x}+1026", "the LaTeX uses \\style, which may link, style or script"),
        ("\\htmlData{a=b}{x}+1026", "the LaTeX uses \\htmlData, which may link, style or script"),
        ("\\def\\y{x}\\y+1026", "the LaTeX uses \\def, which may link, style or script"),
        (
            "^^5chref{javascript:alert(1)}{x}+1026",
            "the LaTeX uses ^^, which may link, style or script",
        ),
        ("\\textcolor{red}{x}+1026", "\\textcolor: the source draws no colour"),
        ("{\\color{red}x}+1026", "\\color: the source draws no colour"),
        ("x+{\\Huge 1026}", "\\Huge: the source draws no size change"),
        ("x+\\hspace{5cm}1026", "\\hspace: the source draws no such space"),
        ("x+1026\\phantom{\\text{answer: 7}}", "\\phantom: the source draws no such space"),
    ],
)
def test_wrong_or_dangerous_latex_never_passes(latex, reason):
    check = validate(X_1026, latex)
    assert not check.ok
    assert check.score < VALIDATION_THRESHOLD or not check.syntax_ok or reason.startswith("\\")
    assert reason in check.reasons


def test_colour_and_space_pass_where_the_source_draws_them():
    mathml = "<math><mi mathcolor='red'>x</mi><mspace width='3em'/><mn>1</mn></math>"
    check = validate(mathml, "\\textcolor{red}{x}\\hspace{3em}1")
    assert (check.ok, check.reasons) == (True, [])


def test_forbidden_commands_lists_each_once_in_order():
    latex = "\\url{a}\\href{javascript:x}{y}\\cssId{i}{z}\\href{b}{c}\\frac12\\htmlStyle{s}{t}"
    assert forbidden_commands(latex) == ["\\url", "\\href", "\\cssId", "\\htmlStyle"]
    assert forbidden_commands("\\text{href}+\\hrefx+\\frac{1}{2}") == []


def test_reasons_follow_the_active_language():
    with translation.override("ko"):
        check = validate(QUADRATIC, "x=\\frac{-b\\pm\\sqrt{b-4ac}}{2a}")
        swapped = validate(QUADRATIC, "x=\\frac{2a}{-b\\pm\\sqrt{b^2-4ac}}")
    assert check.reasons == ["b의 지수 2이(가) 빠졌습니다"]
    assert swapped.reasons == ["분자 -b±√(b^2-4ac)와(과) 분모 2a이(가) 뒤바뀌었습니다"]


@pytest.mark.django_db
def test_a_reviewers_edit_with_a_link_or_a_missing_argument_is_refused():
    job = make_job(make_questions(1), name="review")
    (item_id,) = set_items(job, 1, status=Item.Status.NEEDS_REVIEW, result_latex="x")
    item = Item.objects.get(pk=item_id)
    reviewer = staff_user("rita", "reviewers")
    with translation.override("ko"), pytest.raises(reviews.InvalidReview) as refused:
        reviews.item_edit_approve(item=item, user=reviewer, latex="\\href{javascript:alert(1)}{x}")
    assert str(refused.value) == (
        "LaTeX에 링크·스타일·스크립트를 넣을 수 있는 \\href이(가) 있습니다. 지워 주세요."
    )
    with pytest.raises(reviews.InvalidReview, match="argument 2 of \\\\frac is missing"):
        reviews.item_edit_approve(item=item, user=reviewer, latex="\\frac{1}")
    item.refresh_from_db()
    assert item.review_status == Item.ReviewStatus.UNREVIEWED


def test_syntax_problems_and_style_reasons_in_korean():
    with translation.override("ko"):
        problems = syntax_problems("\\begin{CD}a\\end{CD}+\\dots")
        check = validate("<math><mi>x</mi><mo>+</mo><mn>1</mn></math>", "\\mathrm{x}+\\frac{1}")
    assert problems == [
        "CD 환경은 MathLive가 모르는 환경입니다",
        "\\dots은(는) MathLive가 모르는 명령입니다",
    ]
    assert check.reasons == [
        "\\frac의 2번째 인수가 빠졌습니다",
        "x이(가) 원본의 기울임꼴이 아니라 똑바른 글꼴입니다",
    ]


@pytest.mark.parametrize(
    ("mathml", "latex"),
    [
        (
            "<math><mrow><mo>(</mo><mfrac linethickness='0'><mi>n</mi><mi>k</mi></mfrac>"
            "<mo>)</mo></mrow></math>",
            "\\genfrac(){0pt}{}{n}{k}",
        ),
        (
            "<math><mtable><mtr><mtd><mi>a</mi></mtd><mtd><mi>b</mi></mtd><mtd></mtd></mtr>"
            "</mtable></math>",
            "\\begin{matrix}a & b & \\end{matrix}",
        ),
        (
            "<math><mtable><mtr><mtd><mn>1</mn></mtd></mtr></mtable></math>",
            "\\begin{pmatrix*}[r]1\\end{pmatrix*}".replace("pmatrix", "matrix"),
        ),
        (
            "<math><mtext>if </mtext><mi>x</mi><mo>&gt;</mo><mn>1</mn></math>",
            "\\text{if $x>1$}",
        ),
        (
            "<math><menclose notation='top'><mi>E</mi></menclose></math>",
            "\\overline{E}",
        ),
        ("<math><mi>a</mi><mo>:</mo><mo>:</mo><mi>b</mi></math>", "a\\dblcolon b"),
        ("<math><mtext>a b</mtext></math>", "\\text{a~b}"),
    ],
    ids=[
        "genfrac",
        "empty last cell",
        "starred matrix",
        "math in text",
        "top line",
        "colons",
        "no-break space",
    ],
)
def test_spellings_latex2mathml_misreads_pass(mathml, latex):
    check = validate(mathml, latex)
    assert (check.ok, check.reasons) == (True, [])
