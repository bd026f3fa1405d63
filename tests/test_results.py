"""The pure step outcome -> result (conversions/results.py), with no database at all.

pytest-django refuses any query in a test without the django_db mark, so these tests
also prove that the step reads nothing from the database.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from conversions.cache import CachedResult
from conversions.engine.types import ErrorCategory, Outcome
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job
from conversions.pricing import Prices
from conversions.results import (
    cached_result,
    call_cost,
    needs_llm,
    outcome_result,
    rules_result,
    skipped_result,
)
from tests.jobutil import fraction

NS = 'xmlns="http://www.w3.org/1998/Math/MathML"'
GLYPH = f'<math {NS}><mi>x</mi><mo>+</mo><mglyph src="s.png" alt="star"/></math>'
BROKEN = f"<math {NS}><mfrac><mn>1</mn>"
PRICE = Prices(
    model="m",
    input=Decimal("0.40"),
    cached_input=Decimal("0.10"),
    output=Decimal("1.60"),
    batch_input=Decimal("0.20"),
    batch_cached_input=Decimal("0.05"),
    batch_output=Decimal("0.80"),
)


def outcome(**fields) -> Outcome:
    return Outcome(**{"item_id": 7, "ok": True, **fields})


def test_the_rules_result_of_a_formula_the_converter_handles_is_validated():
    result = rules_result(item_id=7, question_id=3, mathml=fraction(1))
    assert (result.status, result.route, result.error_category) == ("succeeded", "rules", "")
    assert result.latex == r"\frac{1}{x}+y^2"
    assert result.validation_score == 1.0
    assert not needs_llm(result)


def test_unreadable_mathml_fails_as_invalid_input_and_a_converter_gap_as_invalid_output():
    unreadable = rules_result(item_id=7, question_id=3, mathml=BROKEN)
    assert (unreadable.status, unreadable.error_category) == ("failed", "invalid_input")
    assert unreadable.error_message.startswith("rules: ")
    gap = rules_result(item_id=7, question_id=3, mathml=GLYPH)
    assert (gap.status, gap.error_category) == ("failed", "invalid_output")
    assert needs_llm(unreadable) and needs_llm(gap)


def test_an_llm_answer_is_validated_and_costed_at_the_price_row():
    answer = outcome(value={"latex": r"\frac{1}{x}+y^2"}, tokens_in=1000, tokens_out=500)
    result = outcome_result(
        answer,
        item_id=7,
        question_id=3,
        mathml=fraction(1),
        labeling_job=False,
        prices=PRICE,
        cache_key="k1",
        rules_ms=12.0,
    )
    assert (result.status, result.route, result.cache_key) == ("succeeded", "llm", "k1")
    assert result.cost_usd == Decimal("0.001200")  # 1000 * 0.40/1M + 500 * 1.60/1M
    assert result.latency_ms == 12


def test_an_llm_answer_that_draws_something_else_needs_review_and_is_not_cached():
    answer = outcome(value={"latex": r"\frac{2}{x}"})
    result = outcome_result(
        answer,
        item_id=7,
        question_id=3,
        mathml=fraction(1),
        labeling_job=False,
        prices=None,
        cache_key="k1",
    )
    assert (result.status, result.error_category) == ("needs_review", "validation_failed")
    assert result.cache_key == ""
    assert result.cost_usd == Decimal("0")


def test_a_refused_call_is_marked_from_the_http_status_not_the_message():
    refused = outcome(
        ok=False,
        error_category=ErrorCategory.API_ERROR,
        error_message="the model does not exist",
        http_status=404,
        refused=True,
    )
    result = outcome_result(
        refused, item_id=7, question_id=3, mathml=fraction(1), labeling_job=False, prices=None
    )
    assert (result.status, result.error_category, result.refused) == ("failed", "api_error", True)
    timeout = outcome(ok=False, error_category=ErrorCategory.TIMEOUT, error_message="HTTP 404")
    result = outcome_result(
        timeout, item_id=7, question_id=3, mathml=fraction(1), labeling_job=False, prices=None
    )
    assert result.refused is False


def test_a_cache_hit_is_validated_again_and_records_what_it_saved():
    hit = CachedResult(
        key="k1",
        latex=r"\frac{1}{x}+y^2",
        validation_score=1.0,
        tokens_in=10,
        tokens_out=5,
        cost_usd=Decimal("0.000020"),
    )
    result = cached_result(item_id=7, question_id=3, mathml=fraction(1), hit=hit)
    assert (result.status, result.route, result.cached) == ("succeeded", "cache", True)
    assert result.cost_saved_usd == Decimal("0.000020")
    assert result.cost_usd == Decimal("0")


def test_labels_from_the_engine_become_the_item_labels():
    labels = {"unit": "분수"}
    result = outcome_result(
        outcome(value=labels), item_id=7, question_id=3, mathml="", labeling_job=True, prices=None
    )
    assert (result.status, result.labels, result.route) == ("succeeded", labels, "llm")


def test_cached_input_tokens_are_costed_at_the_cached_price():
    answer = outcome(
        value={"latex": r"\frac{1}{x}+y^2"}, tokens_in=1500, tokens_cached=1024, tokens_out=20
    )
    result = outcome_result(
        answer, item_id=7, question_id=3, mathml=fraction(1), labeling_job=False, prices=PRICE
    )
    # 476 * 0.40 + 1024 * 0.10 + 20 * 1.60 = 190.4 + 102.4 + 32 = 324.8 per 1M tokens.
    assert (result.tokens_in, result.tokens_cached) == (1500, 1024)
    assert result.cost_usd == Decimal("0.000325")  # 0.0003248, to the micro-dollar
    assert result.prompt_cache_saved_usd == Decimal("0.000307")  # 1024 * 0.30 = 307.2


def test_cost_is_rounded_to_the_micro_dollar():
    assert call_cost(PRICE, 1, 1) == Decimal("0.000002")
    assert call_cost(None, 10**6, 10**6) == Decimal("0")


def test_a_skipped_result_says_why():
    result = skipped_result(item_id=7, question_id=3)
    assert result.status == Item.Status.SKIPPED
    assert "locked by review" in result.error_message


@pytest.mark.django_db
def test_job_settings_map_onto_job_fields_and_fill_the_default_model(settings):
    settings.MATHCONV_DEFAULT_CONVERT_MODEL = "gpt-default"
    chosen = JobSettings(backend=Job.Backend.OPENAI, test_mode=True, limit=500).resolved()
    assert chosen.model == "gpt-default"
    assert chosen.endpoint.name == "default"  # an LLM job records its endpoint
    assert chosen.item_limit() == 50  # test mode caps any limit
    fields = chosen.job_fields()
    job_fields = {f.name for f in Job._meta.get_fields()}
    assert set(fields) <= job_fields
    assert "limit" not in fields
    assert fields["prompt_version"]
    assert JobSettings(backend=Job.Backend.RULES).resolved().model == ""
    assert JobSettings(backend=Job.Backend.RULES, limit=7).item_limit() == 7


# Wrong answers the validator's round trip lets through (it compares structure), which
# the no-silent-loss check (converters.account) catches: a semantics with several
# presentation children kept only in part, a forced line break run together.
SEMANTICS = (
    f"<math {NS}><semantics><mi>a</mi><mo>+</mo><mi>b</mi>"
    '<annotation encoding="LaTeX">a+b</annotation></semantics></math>'
)
LINE_BREAK = f'<math {NS}><mi>a</mi><mspace linebreak="newline"/><mi>b</mi></math>'


def test_an_llm_answer_that_loses_content_needs_review_with_the_lost_items_as_reasons():
    for mathml, latex, lost in ((SEMANTICS, "a", "'+'"), (LINE_BREAK, "ab", "a line break")):
        result = outcome_result(
            outcome(value={"latex": latex}),
            item_id=7,
            question_id=3,
            mathml=mathml,
            labeling_job=False,
            prices=None,
            cache_key="k1",
        )
        assert (result.status, result.error_category) == ("needs_review", "validation_failed")
        assert any(reason.startswith(lost) for reason in result.validation_reasons)
        assert lost in result.error_message
        assert result.cache_key == ""  # never stored as a good answer


def test_a_cache_hit_that_loses_content_is_not_a_success():
    hit = CachedResult(
        key="k1", latex="a", validation_score=1.0, tokens_in=1, tokens_out=1, cost_usd=Decimal(0)
    )
    result = cached_result(item_id=7, question_id=3, mathml=SEMANTICS, hit=hit)
    assert (result.status, result.error_category) == ("needs_review", "validation_failed")
    assert "'b' is missing from the result (1 in the source, 0 in the result)" in (
        result.validation_reasons
    )
