"""Cost that matches the invoice: cached input tokens at the cached price, on every item
and on the job page; Batch API prices for the batch mode (conversions/pricing.py)."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.test import Client

from conversions import services, tasks
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, EndpointModel, Item, Job, ModelPrice, Question
from conversions.pricing import Cost, cost, prices_for
from tests import jobutil
from tests.jobutil import make_questions

pytestmark = pytest.mark.django_db

# Prices far above any real model's, so that a few items' cost shows at four decimals.
PRICES = {
    "input_per_mtok": Decimal("400"),
    "cached_input_per_mtok": Decimal("100"),
    "output_per_mtok": Decimal("1600"),
}


def test_a_job_whose_server_reports_cached_tokens_is_costed_at_the_cached_price(
    llm, other_fake_openai, monkeypatch, admin_user
):
    server = other_fake_openai
    server.configure(cached_tokens=60)
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    endpoint = Endpoint.objects.create(
        name="cached", kind="compatible", base_url=server.base_url, key_env="MC_TEST_KEY"
    )
    EndpointModel.objects.create(endpoint=endpoint, model="gpt-4.1-mini", **PRICES)
    make_questions(4)
    job = services.job_create(
        job_settings=JobSettings(
            backend=Job.Backend.OPENAI,
            model="gpt-4.1-mini",
            endpoint=endpoint,
            use_cache=False,
            max_concurrent=2,
        ),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED

    items = list(job.items.order_by("id"))
    assert [i.status for i in items] == [Item.Status.SUCCEEDED] * 4
    # The fake server counts ceil(len/4) + 4 tokens a message: the same prompt shape for
    # each of these formulas, so the same numbers on every item.
    assert {(i.tokens_in, i.tokens_cached, i.tokens_out) for i in items} == {(253, 60, 8)}
    # (253 - 60) * 400 + 60 * 100 + 8 * 1600 = 77,200 + 6,000 + 12,800 = 96,000 per 1M.
    assert {i.cost_usd for i in items} == {Decimal("0.096000")}
    assert {i.prompt_cache_saved_usd for i in items} == {Decimal("0.018000")}  # 60 * 300

    client = Client()
    client.force_login(admin_user)
    stats = client.get(f"/admin/conversions/job/{job.pk}/stats.json").json()["stats"]
    assert stats["tokens_in"] == 4 * 253 and stats["cost_usd"] == 0.384
    assert stats["prompt_cache"] == {
        "tokens_cached": 240,
        "share": 240 / 1012,
        "saved_usd": 0.072,
        "share_text": "23.7%",
    }
    page = client.get(f"/admin/conversions/job/{job.pk}/change/").content.decode()
    assert '<dd id="mc-prompt-share">23.7%</dd>' in page
    assert '<dd id="mc-prompt-saved">$0.0720</dd>' in page
    assert '<dd id="mc-cost">$0.3840</dd>' in page  # 0.4560 at the full input price
    korean = client.get(
        f"/admin/conversions/job/{job.pk}/change/", HTTP_ACCEPT_LANGUAGE="ko"
    ).content.decode()
    assert '입력 중 캐시 비율</dt><dd id="mc-prompt-share">23.7%</dd>' in korean


def test_prices_come_from_the_endpoint_model_then_the_price_table():
    ModelPrice.objects.update_or_create(
        model="gpt-4.1-mini",
        defaults={
            "input_per_mtok": Decimal("0.40"),
            "output_per_mtok": Decimal("1.60"),
            "cached_input_per_mtok": Decimal("0.10"),
            "batch_discount": Decimal("0.5"),
        },
    )
    endpoint = Endpoint.objects.create(name="e", kind="openai")
    table = prices_for(endpoint=endpoint, model="gpt-4.1-mini-2025-04-14")
    assert (table.input, table.cached_input, table.output) == (
        Decimal("0.40"),
        Decimal("0.10"),
        Decimal("1.60"),
    )
    assert (table.batch_input, table.batch_cached_input, table.batch_output) == (
        Decimal("0.200"),
        Decimal("0.0500"),
        Decimal("0.800"),
    )
    # The endpoint's own row wins field by field; its blanks fall back to the table.
    EndpointModel.objects.create(
        endpoint=endpoint,
        model="gpt-4.1-mini",
        input_per_mtok=Decimal("0.50"),
        batch_input_per_mtok=Decimal("0.30"),
    )
    own = prices_for(endpoint=endpoint, model="gpt-4.1-mini")
    assert (own.input, own.cached_input, own.output, own.batch_input) == (
        Decimal("0.50"),
        Decimal("0.10"),
        Decimal("1.60"),
        Decimal("0.30"),
    )
    assert own.batch_cached_input == Decimal("0.10") * Decimal("0.30") / Decimal("0.50")
    assert prices_for(endpoint=endpoint, model="llama3") is None
    assert cost(None, tokens_in=10**6, tokens_out=10**6) == Cost(Decimal(0), Decimal(0))


def test_batch_prices_apply_to_input_cached_input_and_output():
    ModelPrice.objects.update_or_create(
        model="gpt-4.1-mini",
        defaults={
            "input_per_mtok": Decimal("0.40"),
            "output_per_mtok": Decimal("1.60"),
            "cached_input_per_mtok": Decimal("0.10"),
            "batch_discount": Decimal("0.5"),
        },
    )
    prices = prices_for(endpoint=None, model="gpt-4.1-mini")
    tokens = {"tokens_in": 3000, "tokens_cached": 2048, "tokens_out": 500}
    realtime = cost(prices, **tokens)
    batch = cost(prices, batch=True, **tokens)
    # 952 * 0.40 + 2048 * 0.10 + 500 * 1.60 = 380.8 + 204.8 + 800 = 1385.6 per 1M.
    assert realtime == Cost(Decimal("0.0013856"), Decimal("0.0006144"))
    assert batch == Cost(Decimal("0.0006928"), Decimal("0.0003072"))
    assert batch.quantized() == Cost(Decimal("0.000693"), Decimal("0.000307"))


def test_the_data_migration_gives_the_seeded_models_their_cached_input_price():
    # A flush by a transactional test may have removed the migration's rows: make them.
    ModelPrice.objects.filter(model__in=["gpt-4.1-mini", "gpt-4o-mini"]).delete()
    for model in ("gpt-4.1-mini", "gpt-4o-mini"):
        ModelPrice.objects.create(model=model, input_per_mtok=1, output_per_mtok=1)
    ModelPrice.objects.create(
        model="gpt-4o", input_per_mtok=1, output_per_mtok=1, cached_input_per_mtok=None
    )
    migration = importlib.import_module("conversions.migrations.0013_prices_cached_tokens_few_shot")
    migration.seed_cached_prices(django_apps, None)
    seeded = dict(ModelPrice.objects.values_list("model", "cached_input_per_mtok"))
    assert seeded == {
        "gpt-4.1-mini": Decimal("0.1000"),
        "gpt-4o-mini": Decimal("0.0750"),
        "gpt-4o": None,  # not one of the seeded models: left blank (no discount)
    }
