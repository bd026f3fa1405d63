"""The result cache: one call per distinct input, hits and money saved in the stats."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from conversions import selectors, services, tasks
from conversions.cache import cache_count_hits, cache_key, repeated_share
from conversions.jobsettings import JobSettings
from conversions.models import CacheEntry, Item, Job, Question
from tests.jobutil import fraction

pytestmark = pytest.mark.django_db


def spaced(n: int) -> str:
    """The same formula as fraction(n), written differently (whitespace, no namespace)."""
    return (
        f"<math>\n  <mfrac> <mn>{n}</mn> <mi>x</mi> </mfrac>\n  <mo>+</mo>"
        "<msup><mi>y</mi><mn>2</mn></msup>\n</math>"
    )


def create(**options) -> Job:
    options.setdefault("backend", Job.Backend.OPENAI)
    return services.job_create(
        job_settings=JobSettings(max_concurrent=4, **options),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )


def bank() -> None:
    """Ten questions, three distinct formulas."""
    formulas = [fraction(1), spaced(1), fraction(2), fraction(1), spaced(2)]
    formulas += [fraction(3), fraction(3), spaced(3), fraction(2), fraction(1)]
    Question.objects.bulk_create(
        Question(question_id=f"Q-{n:02d}", mathml=m) for n, m in enumerate(formulas)
    )


def test_identical_inputs_are_called_once_and_reused(llm):
    assert cache_key(
        kind="convert", backend="openai", model="m", prompt_version="v", mathml=fraction(1)
    ) == cache_key(
        kind="convert", backend="openai", model="m", prompt_version="v", mathml=spaced(1)
    )
    bank()
    first = create()
    tasks.job_run_inline(first)
    assert llm.stats()["requests"] == 3
    stats = selectors.job_stats(job=first)
    assert stats["counts"] == {"succeeded": 10}
    assert stats["cache"]["hits"] == 7 and stats["routes"] == {"llm": 3, "cache": 7}
    per_call = stats["cost_usd"] / 3
    assert stats["cache"]["saved_usd"] == pytest.approx(7 * per_call, abs=1e-6)
    assert CacheEntry.objects.count() == 3

    second = create()
    tasks.job_run_inline(second)
    assert llm.stats()["requests"] == 3  # no call at all
    stats = selectors.job_stats(job=second)
    assert stats["cache"]["hits"] == 10 and stats["cost_usd"] == 0
    assert stats["cache"]["saved_usd"] == pytest.approx(10 * per_call, abs=1e-6)
    assert set(second.items.values_list("route", "cached")) == {("cache", True)}
    assert sum(CacheEntry.objects.values_list("hits", flat=True)) == 17


def test_no_cache_forces_fresh_calls_and_other_models_do_not_share(llm):
    bank()
    tasks.job_run_inline(create())
    tasks.job_run_inline(fresh := create(use_cache=False))
    assert llm.stats()["requests"] == 3 + 10
    assert not fresh.items.filter(cached=True).exists()
    tasks.job_run_inline(create(model="gpt-4o-mini"))
    assert llm.stats()["requests"] == 3 + 10 + 3


def test_only_validated_results_are_cached(llm):
    Question.objects.create(
        question_id="w1", mathml="<math><mn>7</mn><mtext>fake:wrong</mtext></math>"
    )
    Question.objects.create(
        question_id="w2", mathml="<math><mn>7</mn><mtext>fake:wrong</mtext></math>"
    )
    job = create()
    tasks.job_run_inline(job)
    assert set(job.items.values_list("status", flat=True)) == {Item.Status.NEEDS_REVIEW}
    assert llm.stats()["requests"] == 2  # the first answer failed review: asked again
    assert not CacheEntry.objects.exists()


def test_the_hit_rate_on_the_demo_bank(llm, capsys):
    call_command("load_demo")
    repeated, total = repeated_share(
        Question.objects.order_by("id").values_list("mathml", flat=True)
    )
    job = create()
    tasks.job_run_inline(job)
    stats = selectors.job_stats(job=job)
    assert stats["done"] == total
    assert llm.stats()["requests"] == total - repeated
    assert stats["cache"]["hits"] == repeated
    assert stats["cache"]["hit_rate"] > 0.1
    with capsys.disabled():
        print(
            f"\ndemo bank: {repeated} of {total} formulas repeat: cache hit rate "
            f"{stats['cache']['hit_rate'] * 100:.1f} %, saved ${stats['cache']['saved_usd']:.6f}"
        )


def test_hits_are_counted_with_one_update_per_distinct_count(django_assert_num_queries):
    keys = [f"k{n:03d}" for n in range(40)]
    CacheEntry.objects.bulk_create(CacheEntry(key=key, result_latex="x") for key in keys)
    hits = keys[:30] + keys[:10] + keys[:5]  # 5 keys hit 3 times, 5 twice, 20 once
    with django_assert_num_queries(3):
        cache_count_hits(keys=hits)
    counts = dict(CacheEntry.objects.values_list("key", "hits"))
    assert [counts[key] for key in keys] == [3] * 5 + [2] * 5 + [1] * 20 + [0] * 10
