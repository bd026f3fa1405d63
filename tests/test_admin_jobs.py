import csv
import io
import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from conversions.models import Endpoint, EndpointModel, Item, Job, ModelPrice, Question
from conversions.selectors import message_pattern
from tests.adminutil import make_job, set_items
from tests.jobutil import make_questions

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:conversions_job_changelist")
ITEMS = reverse("admin:conversions_item_changelist")
FAILURES = reverse("admin:conversions_item_failures")


def finished_job(n_ok=6, n_failed=2, n_pending=2, name="demo") -> Job:
    job = make_job(make_questions(n_ok + n_failed + n_pending, prefix=name), name=name)
    now = timezone.now()
    set_items(job, n_ok, status=Item.Status.SUCCEEDED, result_latex="x", finished_at=now)
    set_items(
        job,
        n_failed,
        status=Item.Status.FAILED,
        error_category=Item.ErrorCategory.TIMEOUT,
        error_message="request timed out after 30 s",
        finished_at=now,
    )
    return job


def test_job_list_shows_progress_and_success_rate_without_a_query_per_row(operator):
    job = finished_job()

    response = operator.get(JOBS)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<progress class="mc-progress" value="8" max="10">' in html  # 8 of 10 done
    assert "75.0 % (6/8)" in html  # 6 of the 8 finished succeeded, counts beside the rate
    assert str(job) in html

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert operator.get(JOBS).status_code == 200
        return len(captured)

    few = queries()
    for i in range(5):
        finished_job(name=f"more{i}")
    assert queries() == few


def test_job_page_and_stats_json(operator):
    job = finished_job()
    page = operator.get(reverse("admin:conversions_job_change", args=[job.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="mc-job-data"' in html
    assert reverse("admin:conversions_job_stats", args=[job.pk]) in html
    assert "Content-Security-Policy" in page.headers
    for control in ("pause", "resume", "cancel", "retry"):
        assert reverse("admin:conversions_job_control", args=[job.pk, control]) in html

    data = operator.get(reverse("admin:conversions_job_stats", args=[job.pk])).json()
    stats = data["stats"]
    assert (stats["done"], stats["total"]) == (8, 10)
    assert stats["counts"] == {"succeeded": 6, "failed": 2, "pending": 2}
    timeout = stats["failures"]["timeout"]
    assert timeout["count"] == 2
    assert timeout["samples"] == ["request timed out after 30 s"]
    assert timeout["url"] == f"{ITEMS}?job={job.pk}&error_category__exact=timeout"
    assert data["final"] is False
    assert isinstance(data["series"], list)
    stats_url = reverse("admin:conversions_job_stats", args=[job.pk])
    assert operator.get(stats_url, {"series": "0"}).json()["series"] is None
    Job.objects.filter(pk=job.pk).update(status=Job.Status.COMPLETED)
    assert isinstance(operator.get(stats_url, {"series": "0"}).json()["series"], list)


def test_controls_pause_resume_cancel_and_retry(operator):
    job = finished_job()
    control = lambda op: reverse("admin:conversions_job_control", args=[job.pk, op])  # noqa: E731

    assert operator.get(control("pause")).status_code == 405
    operator.post(control("pause"))
    job.refresh_from_db()
    assert job.status == Job.Status.PAUSED
    operator.post(control("resume"))
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED

    response = operator.post(control("retry"))
    assert response.status_code == 302
    assert Item.objects.filter(job=job, status=Item.Status.FAILED).count() == 0
    assert Item.objects.filter(job=job, status=Item.Status.PENDING).count() == 4

    # Cancel asks first (a confirmation page without JavaScript), then cancels.
    page = operator.post(control("cancel"))
    assert page.status_code == 200 and 'name="confirm" value="1"' in page.content.decode()
    job.refresh_from_db()
    assert job.status != Job.Status.CANCELLED
    operator.post(control("cancel"), {"confirm": "1"})
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert Item.objects.filter(job=job, status=Item.Status.CANCELLED).count() == 4


def test_export_results_in_three_formats(operator):
    job = finished_job(n_ok=2, n_failed=1, n_pending=0)
    Item.objects.filter(job=job, status=Item.Status.SUCCEEDED).update(
        result_latex="=1+1", cost_usd="0.001250", error_message="=HYPERLINK()"
    )

    def export(fmt):
        response = operator.get(reverse("admin:conversions_job_export", args=[job.pk, fmt]))
        assert response.status_code == 200
        assert f"job-{job.pk}-results.{fmt}" in response["Content-Disposition"]
        return b"".join(response.streaming_content) if response.streaming else response.content

    rows = list(csv.DictReader(io.StringIO(export("csv").decode("utf-8-sig"))))
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"succeeded", "failed"}
    assert "=1+1" in [r["result_latex"] for r in rows]  # LaTeX is exported exactly
    assert "'=HYPERLINK()" in [r["error_message"] for r in rows]  # text a sheet would run
    assert all(r["finished_at"].endswith("+09:00") for r in rows if r["finished_at"])

    records = json.loads(export("json"))
    assert sorted(r["result_latex"] for r in records) == ["", "=1+1", "=1+1"]
    assert records[0]["question_id"].startswith("demo")

    sheet = load_workbook(io.BytesIO(export("xlsx"))).active
    assert sheet.max_row == 4
    values = list(sheet.iter_rows(values_only=True))
    header = list(values[0])
    by_status = {r[header.index("status")]: r for r in values[1:]}
    assert by_status["succeeded"][header.index("cost_usd")] == 0.00125  # a number
    assert by_status["succeeded"][header.index("result_latex")] == "=1+1"  # text, not formula
    cells = [c for row in sheet.iter_rows() for c in row]
    assert [c.data_type for c in cells].count("f") == 0

    # A cell XLSX cannot hold: refused with a message naming the item, nothing sent.
    Item.objects.filter(job=job, status=Item.Status.FAILED).update(error_message="x" * 40000)
    response = operator.get(reverse("admin:conversions_job_export", args=[job.pk, "xlsx"]))
    assert response.status_code == 302
    shown = [str(m) for m in response.wsgi_request._messages]
    assert len(shown) == 1 and "error_message" in shown[0] and "32,767" in shown[0]
    assert (
        operator.get(reverse("admin:conversions_job_export", args=[job.pk, "pdf"])).status_code
        == 404
    )


def test_failure_messages_are_grouped_with_counts(operator):
    job = make_job(make_questions(9))
    for message in (
        "request timed out after 30 s",
        "request timed out after 31 s",
        "request timed out after 30 s",
        "HTTP 503: 'upstream overloaded'",
        "HTTP 503: 'model busy'",
    ):
        category = "timeout" if "timed out" in message else "api_error"
        set_items(job, 1, status="failed", error_category=category, error_message=message)

    assert message_pattern("request timed out after 30 s") == "request timed out after … s"
    response = operator.get(FAILURES, {"job": job.pk})
    groups = response.context["groups"]
    assert [(g["category"], g["pattern"], g["count"]) for g in groups] == [
        ("timeout", "request timed out after … s", 3),
        ("api_error", "HTTP …: …", 2),
    ]
    html = response.content.decode()
    assert "error_message__startswith=request+timed+out+after+3" in html

    # The group's link lists exactly the group's items.
    listing = operator.get(
        ITEMS,
        {
            "job": job.pk,
            "error_category__exact": "timeout",
            "error_message__startswith": "request timed out after 3",
        },
    )
    assert listing.context["cl"].result_count == 3


def test_retry_a_category_selected_items_and_one_item(operator):
    job = make_job(make_questions(6))
    timeouts = set_items(job, 3, status="failed", error_category="timeout", error_message="t")
    invalid = set_items(job, 2, status="failed", error_category="invalid_output", error_message="x")

    operator.post(
        reverse("admin:conversions_item_retry_category"), {"category": "timeout", "job": job.pk}
    )
    assert set(Item.objects.filter(status="pending").values_list("id", flat=True)) >= set(timeouts)
    assert Item.objects.filter(pk__in=invalid, status="failed").count() == 2

    operator.post(ITEMS, {"action": "retry_selected", "_selected_action": [invalid[0]], "index": 0})
    assert Item.objects.get(pk=invalid[0]).status == "pending"

    page = operator.get(reverse("admin:conversions_item_change", args=[invalid[1]]))
    assert reverse("admin:conversions_item_retry", args=[invalid[1]]) in page.content.decode()
    operator.post(reverse("admin:conversions_item_retry", args=[invalid[1]]))
    assert Item.objects.get(pk=invalid[1]).status == "pending"


def test_item_page_shows_excerpts_without_secrets_and_sanitised_mathml(operator):
    question = Question.objects.create(
        question_id="XSS",
        mathml='<math><mi href="javascript:alert(1)">x</mi><script>alert(2)</script></math>',
    )
    job = make_job([question])
    item = job.items.get()
    Item.objects.filter(pk=item.pk).update(
        status="failed",
        error_category="api_error",
        error_message="HTTP 401",
        request_excerpt='Authorization: Bearer sk-secretsecretsecret\n{"model": "m"}',
        response_excerpt='{"error": "bad key sk-secretsecretsecret"}',
    )
    html = operator.get(reverse("admin:conversions_item_change", args=[item.pk])).content.decode()
    assert "sk-secret" not in html
    assert "[redacted]" in html
    assert '<div class="mc-mathml"><math><mi>x</mi></math></div>' in html
    assert "alert(" not in html


def test_item_list_counts_at_most_a_capped_number(operator, monkeypatch):
    from conversions.admin.lists import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "cap", 5)
    make_job(make_questions(12))
    response = operator.get(ITEMS)
    assert response.context["cl"].result_count == 6  # counted up to cap + 1
    assert "more than 5 items" in response.content.decode()


def test_launch_for_ticked_questions_shows_count_estimate_and_settings(operator):
    questions = make_questions(4)
    response = operator.post(
        reverse("admin:conversions_question_changelist"),
        {
            "action": "convert_questions",
            "_selected_action": [q.pk for q in questions[:3]],
            "index": 0,
        },
    )
    assert response.status_code == 200
    assert response.context["selected"] == 3
    assert response.context["estimate"]["count"] == 3
    html = response.content.decode()
    assert 'name="batch_size"' in html and 'name="max_concurrent"' in html
    assert html.count('name="ids"') == 3

    launch = reverse("admin:conversions_question_launch", args=["convert"])
    created = operator.post(
        launch,
        {
            "ids": [q.pk for q in questions[:3]],
            "backend": "rules",
            "batch_size": 50,
            "max_concurrent": 5,
            "use_cache": "on",
            "_launch": "1",
        },
    )
    job = Job.objects.get()
    assert created["Location"] == reverse("admin:conversions_job_change", args=[job.pk])
    assert job.selection == {"ids": [q.pk for q in questions[:3]]}
    assert (job.total_items, job.batch_size, job.max_concurrent) == (3, 50, 5)
    assert job.created_by.username == "olga"


def test_launch_all_matching_the_filter_stores_the_filter_not_ids(operator):
    make_questions(5, prefix="ALG")
    Question.objects.filter(question_id__startswith="ALG").update(subject="algebra")
    make_questions(3, prefix="GEO")
    Question.objects.filter(question_id="ALG-00001").update(conversion_state="approved")

    launch = reverse("admin:conversions_question_launch", args=["convert"])
    page = operator.get(launch, {"subject": "algebra", "p": "2", "o": "1"})
    assert page.context["selected"] == 5
    assert page.context["estimate"]["count"] == 4  # "only unconverted" is on by default
    assert page.context["form_action"] == f"{launch}?subject=algebra"

    operator.post(
        f"{launch}?subject=algebra",
        {
            "backend": "rules",
            "batch_size": 100,
            "max_concurrent": 10,
            "only_unconverted": "on",
            "_launch": "1",
        },
    )
    job = Job.objects.get()
    assert job.selection == {"filter": {"subject": ["algebra"]}}
    assert set(job.items.values_list("question__question_id", flat=True)) == {
        f"ALG-0000{n}" for n in (2, 3, 4, 5)
    }


def test_select_across_in_the_action_means_the_filter(operator):
    make_questions(3, prefix="ALG")
    Question.objects.update(subject="algebra")
    make_questions(2, prefix="GEO")
    url = reverse("admin:conversions_question_changelist") + "?subject=algebra"
    response = operator.post(
        url,
        {
            "action": "convert_questions",
            "select_across": "1",
            "index": 0,
            "_selected_action": [Question.objects.first().pk],
        },
    )
    assert response.context["selection"] == {"filter": {"subject": ["algebra"]}}
    assert response.context["selected"] == 3
    assert 'name="ids"' not in response.content.decode()


def test_estimate_prices_llm_jobs_from_the_price_table(operator):
    from tests.jobutil import seed_prices

    seed_prices()
    make_questions(10)
    launch = reverse("admin:conversions_question_launch", args=["convert"])
    page = operator.post(
        launch,
        {
            "backend": "openai",
            "model": "gpt-4.1-mini",
            "batch_size": 100,
            "max_concurrent": 10,
            "_estimate": "1",
        },
    )
    estimate = page.context["estimate"]
    assert estimate["count"] == 10
    assert estimate["tokens_in"] > 10 * 100  # the system prompt alone is longer
    assert 0 < estimate["tokens_out"] < estimate["tokens_out_max"]
    price = ModelPrice.objects.get(model="gpt-4.1-mini")
    assert estimate["cost_usd"] == price.cost(estimate["tokens_in"], estimate["tokens_out"])
    assert Job.objects.count() == 0  # estimating does not launch


def test_the_estimate_prices_at_the_chosen_endpoints_own_model_price(operator):
    from tests.jobutil import seed_prices

    seed_prices()
    make_questions(10)
    azure = Endpoint.objects.create(name="azure-kr", base_url="https://x.invalid/v1")
    EndpointModel.objects.create(
        endpoint=azure,
        model="gpt-4.1-mini",
        input_per_mtok=Decimal("1.00"),
        output_per_mtok=Decimal("2.00"),
        batch_input_per_mtok=Decimal("0.30"),
        batch_output_per_mtok=Decimal("0.70"),
    )
    launch = reverse("admin:conversions_question_launch", args=["convert"])
    form = {"backend": "openai", "model": "gpt-4.1-mini", "batch_size": 100}
    form.update(max_concurrent=10, endpoint=azure.pk, _estimate="1")
    for batch_api, (per_in, per_out) in ((False, ("1", "2")), (True, ("0.3", "0.7"))):
        page = operator.post(launch, {**form, **({"batch_api": "on"} if batch_api else {})})
        estimate = page.context["estimate"]
        expected = (
            Decimal(per_in) * estimate["tokens_in"] + Decimal(per_out) * estimate["tokens_out"]
        ) / 1_000_000
        assert estimate["cost_usd"] == expected
        assert f"${Decimal(per_in):.4f} / ${Decimal(per_out):.4f}" in page.content.decode()


def test_launch_reports_a_configuration_error_instead_of_starting(operator, settings):
    settings.OPENAI_API_KEY = ""
    make_questions(2)
    launch = reverse("admin:conversions_question_launch", args=["convert"])
    page = operator.post(
        launch,
        {"backend": "openai", "batch_size": 100, "max_concurrent": 10, "_launch": "1"},
    )
    assert page.status_code == 200
    assert "OPENAI_API_KEY is not set" in page.content.decode()
    assert Job.objects.count() == 0


def test_dashboard_warns_when_work_is_queued_and_no_worker_runs(operator):
    from django.core.cache import cache
    from django_q.models import Schedule

    cache.clear()  # the trends are cached for a minute
    Schedule.objects.all().delete()  # no cluster has run the reconciler
    finished_job()
    page = operator.get(reverse("admin:conversions_job_dashboard"))
    assert page.status_code == 200
    data = page.context["data"]
    assert data["queue"]["cluster_alive"] is False
    assert "qcluster" in data["queue"]["warning"]
    assert "qcluster" in page.content.decode()
    assert [row["count"] for row in data["jobs_by_status"]] == [1]
    day = data["daily"][0]
    assert (day["items"], day["success_rate"]) == (8, 0.75)
    assert day["day"] == timezone.localdate().isoformat()
    assert (data["overall"]["items"], data["overall"]["success_rate"]) == (8, 0.75)

    json_data = operator.get(reverse("admin:conversions_job_dashboard_data")).json()
    assert json_data["queue"]["warning"] == data["queue"]["warning"]


def test_launch_a_labeling_job_against_the_local_server(operator, llm):
    from conversions.models import LabelSchema

    make_questions(3)
    schema = LabelSchema.objects.get()
    launch = reverse("admin:conversions_question_launch", args=["label"])
    page = operator.get(launch)
    assert page.context["estimate"]["llm"] is True
    assert page.context["estimate"]["count"] == 3
    operator.post(
        launch,
        {
            "label_schema": schema.pk,
            "model": "gpt-4o-mini",
            "batch_size": 10,
            "max_concurrent": 2,
            "only_unlabeled": "on",
            "_launch": "1",
        },
    )
    job = Job.objects.get()
    assert (job.kind, job.backend, job.model, job.label_schema) == (
        Job.Kind.LABEL,
        Job.Backend.OPENAI,
        "gpt-4o-mini",
        schema,
    )
    assert job.total_items == 3


def test_pages_follow_the_browser_language(operator):
    job = finished_job()
    korean = {"HTTP_ACCEPT_LANGUAGE": "ko-KR,ko;q=0.9"}
    dashboard = operator.get(reverse("admin:conversions_job_dashboard"), **korean)
    assert "관제실" in dashboard.content.decode()
    page = operator.get(reverse("admin:conversions_job_change", args=[job.pk]), **korean)
    html = page.content.decode()
    assert "분류별 실패" in html and "일시 중지" in html
    stats = operator.get(reverse("admin:conversions_job_stats", args=[job.pk]), **korean).json()
    assert stats["stats"]["failures"]["timeout"]["label"] == "시간 초과"
    english = operator.get(reverse("admin:conversions_job_dashboard"), HTTP_ACCEPT_LANGUAGE="en")
    assert "Control room" in english.content.decode()


def test_conversion_jobs_leave_out_text_only_questions_and_the_launch_page_says_so(operator):
    make_questions(3)
    Question.objects.create(question_id="LABEL-ONLY", mathml="", text="다음 중 옳은 것은?")
    launch = reverse("admin:conversions_question_launch", args=["convert"])
    page = operator.get(launch, HTTP_ACCEPT_LANGUAGE="ko")
    assert (page.context["selected"], page.context["estimate"]["count"]) == (4, 3)
    assert "1개는 MathML이 없습니다" in page.content.decode()
    form = {"backend": "rules", "batch_size": 100, "max_concurrent": 1, "_launch": "1"}
    operator.post(launch, form)
    job = Job.objects.get()
    assert job.total_items == 3
    assert not job.items.filter(question__question_id="LABEL-ONLY").exists()
