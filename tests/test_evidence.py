"""The author's LaTeX shipped with a formula (converters/evidence.py): used only where it
passes every check against the presentation markup, ignored when stale. No database."""

from __future__ import annotations

import pytest

from conversions.converters import ConversionError, mathml_to_latex, trusted_author_latex
from conversions.converters.evidence import author_latexes, passes_checks
from conversions.converters.messages import render
from conversions.converters.parse import parse_mathml
from conversions.results import rules_result
from conversions.stems import rules_stem_result

# A Latin letter with a Hebrew point: the rules converter has no LaTeX accent for the point
# and refuses; MathJax draws the token upright, as \text{} does.
POINTED = "<mi>x&#x5BC;</mi>"
POINTED_LATEX = "\\text{x\u05bc}"
# A bold fraktur word: the converter's \boldsymbol{\mathfrak{...}} draws it (the judge
# rates it identical) but the validator cannot confirm it; the same letters typed as
# Unicode bold fraktur characters pass.
BOLD_FRAKTUR = '<mi mathvariant="bold-fraktur">Creepy</mi>'
BOLD_FRAKTUR_LATEX = "\U0001d56e\U0001d597\U0001d58a\U0001d58a\U0001d595\U0001d59e"


def annotated(body: str, latex: str, encoding: str = "application/x-tex") -> str:
    return (
        f'<math><semantics>{body}<annotation encoding="{encoding}">{latex}</annotation>'
        "</semantics></math>"
    )


def test_the_shipped_latex_is_found_in_data_latex_and_tex_annotations_only():
    math = parse_mathml(
        '<math data-latex="a+b"><semantics><mrow><mi>a</mi><mo>+</mo><mi>b</mi></mrow>'
        '<annotation encoding="MathType-MTEF">MathType@MTEF@5@5@+=feaag</annotation>'
        '<annotation encoding="StarMath 5.0">a + b</annotation>'
        '<annotation encoding="TeX">a + b</annotation>'
        '<annotation encoding="LaTeX">a+b</annotation>'
        "</semantics></math>"
    )
    assert author_latexes(math) == ["a+b", "a + b"]
    # a <semantics> below the top level annotates a part, not the formula
    inner = parse_mathml(
        '<math><mi>c</mi><semantics><mi>a</mi><annotation encoding="TeX">a</annotation>'
        "</semantics></math>"
    )
    assert author_latexes(inner) == []


@pytest.mark.parametrize(
    ("latex", "why"),
    [
        ("3x+1", "a changed digit: stale"),
        ("2x", "a lost term: the accounting check"),
        ("\\href{https://example.com}{2x+1}", "a forbidden command"),
        ("2x+1\\tag{1}", "a command MathLive does not know"),
    ],
)
def test_a_stale_or_unsafe_annotation_is_ignored(latex, why):
    mathml = annotated("<mrow><mn>2</mn><mi>x</mi><mo>+</mo><mn>1</mn></mrow>", latex)
    assert not passes_checks(mathml, latex), why
    assert trusted_author_latex(mathml) is None, why
    # the converter's own LaTeX stands
    assert mathml_to_latex(mathml) == "2x+1"


def test_a_good_annotation_is_used_where_the_converter_refuses():
    with pytest.raises(ConversionError, match="U\\+05BC"):
        mathml_to_latex(f"<math>{POINTED}</math>")
    assert mathml_to_latex(annotated(POINTED, POINTED_LATEX)) == POINTED_LATEX
    # MathJax 4's data-latex on <math> is read the same way
    assert mathml_to_latex(f'<math data-latex="{POINTED_LATEX}">{POINTED}</math>') == (
        POINTED_LATEX
    )


def test_a_stale_annotation_leaves_a_refusal_a_refusal():
    with pytest.raises(ConversionError, match="U\\+05BC"):
        mathml_to_latex(annotated(POINTED, "x"))  # the point is lost: not accounted for


def test_a_good_annotation_never_replaces_the_converters_checked_latex():
    mathml = annotated(
        "<mfrac><mn>1</mn><mn>2</mn></mfrac>", "\\tfrac{1}{2}", encoding="application/x-latex"
    )
    assert trusted_author_latex(mathml) == "\\tfrac{1}{2}"
    assert mathml_to_latex(mathml) == "\\frac{1}{2}"
    result = rules_result(item_id=1, question_id=1, mathml=mathml)
    assert (result.status, result.latex) == ("succeeded", "\\frac{1}{2}")


def test_the_rules_backend_uses_a_good_annotation_where_its_own_latex_fails_the_checks():
    plain = rules_result(item_id=1, question_id=1, mathml=f"<math>{BOLD_FRAKTUR}</math>")
    assert (plain.status, plain.latex) == ("needs_review", "\\boldsymbol{\\mathfrak{Creepy}}")
    good = rules_result(
        item_id=1, question_id=1, mathml=annotated(BOLD_FRAKTUR, BOLD_FRAKTUR_LATEX)
    )
    assert (good.status, good.route, good.latex) == ("succeeded", "rules", BOLD_FRAKTUR_LATEX)
    stale = rules_result(
        item_id=1, question_id=1, mathml=annotated(BOLD_FRAKTUR, "\\mathfrak{Creepy}")
    )
    assert (stale.status, stale.latex) == ("needs_review", "\\boldsymbol{\\mathfrak{Creepy}}")


def test_a_stems_formula_uses_a_good_annotation_where_the_rules_latex_fails():
    stem = f"<p>글자 {annotated(BOLD_FRAKTUR, BOLD_FRAKTUR_LATEX)} 와 {annotated(POINTED, 'x')}</p>"
    result = rules_stem_result(item_id=1, question_id=1, mathml=stem)
    first, second = result.formulas
    assert (first["latex"], first["error"]) == (BOLD_FRAKTUR_LATEX, None)
    assert second["latex"] is None and "U+05BC" in render(second["error"])  # still refused
    assert result.status == "failed"
