import json

import pytest
from django.urls import reverse

from conversions import reviews
from conversions.models import Item, Job, Question, ReviewEvent
from tests.adminutil import login, make_job, set_items, staff_user
from tests.jobutil import make_questions

pytestmark = pytest.mark.django_db

REVIEW = reverse("admin:conversions_item_review")
NEXT = reverse("admin:conversions_item_review_next")
BULK = reverse("admin:conversions_item_review_bulk")


def decide_url(item_id: int) -> str:
    return reverse("admin:conversions_item_review_decide", args=[item_id])


@pytest.fixture
def reviewer():
    return staff_user("rita", "reviewers")


@pytest.fixture
def results():
    """A conversion job whose five results wait for review, scores 0.1 .. 0.9."""
    job = make_job(make_questions(6), name="review me")
    ids = []
    for n, score in enumerate((0.9, 0.1, 0.5, 0.3, 0.7)):
        ids += set_items(
            job,
            1,
            status=Item.Status.NEEDS_REVIEW if score < 0.6 else Item.Status.SUCCEEDED,
            result_latex=f"\\frac{{{n}}}{{x}}",
            validation_score=score,
            validation_reasons=[f"reason {n}"],
        )
    return [Item.objects.get(pk=pk) for pk in ids]


def scores(queue) -> list[float]:
    return list(queue.values_list("validation_score", flat=True))


def test_queue_is_worst_score_first_and_leaves_out_decided_items(results, reviewer):
    assert scores(reviews.review_queue()) == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert scores(reviews.review_queue(max_score=0.6)) == [0.1, 0.3, 0.5]
    reviews.item_skip(item=results[1], user=reviewer)
    reviews.item_approve(item=results[3], user=reviewer)
    assert scores(reviews.review_queue()) == [0.5, 0.7, 0.9]
    assert scores(reviews.review_queue(include_skipped=True)) == [0.1, 0.5, 0.7, 0.9]


def test_approve_puts_the_latex_on_the_question_locked(results, reviewer):
    item = results[0]
    question = item.question
    Question.objects.filter(pk=question.pk).update(latex="old", conversion_state="converted")

    event = reviews.item_approve(item=item, user=reviewer, comment="fine")

    question.refresh_from_db()
    item.refresh_from_db()
    assert (question.latex, question.latex_locked, question.conversion_state) == (
        item.result_latex,
        True,
        Question.ConversionState.APPROVED,
    )
    assert question.latex_accepted_by == reviewer
    assert (item.review_status, item.reviewed_by, item.reviewed_latex) == (
        Item.ReviewStatus.APPROVED,
        reviewer,
        item.result_latex,
    )
    assert (event.action, event.latex_before, event.latex_after, event.comment) == (
        ReviewEvent.Action.APPROVE,
        "old",
        item.result_latex,
        "fine",
    )


def test_edit_and_approve_keeps_both_versions_in_the_history(results, reviewer):
    item = results[1]
    event = reviews.item_edit_approve(item=item, user=reviewer, latex="  \\frac{1}{y}  ")
    item.refresh_from_db()
    item.question.refresh_from_db()
    assert item.review_status == Item.ReviewStatus.EDITED
    assert item.result_latex == "\\frac{1}{x}"  # the job's output is kept as it was
    assert item.reviewed_latex == item.question.latex == "\\frac{1}{y}"
    assert item.question.latex_locked
    assert (event.action, event.latex_after) == (ReviewEvent.Action.EDIT, "\\frac{1}{y}")

    with pytest.raises(reviews.InvalidReview):
        reviews.item_edit_approve(item=results[2], user=reviewer, latex="   ")
    assert Item.objects.get(pk=results[2].pk).review_status == Item.ReviewStatus.UNREVIEWED


def test_reject_takes_the_result_off_an_unlocked_question_only(results, reviewer):
    unlocked, locked = results[0], results[1]
    Question.objects.filter(pk=unlocked.question_id).update(
        latex=unlocked.result_latex, conversion_state="converted"
    )
    Question.objects.filter(pk=locked.question_id).update(
        latex="approved earlier", latex_locked=True, conversion_state="approved"
    )
    reviews.item_reject(item=unlocked, user=reviewer)
    reviews.item_reject(item=locked, user=reviewer)

    assert Question.objects.values_list("latex", "conversion_state").get(
        pk=unlocked.question_id
    ) == ("", "failed")
    assert Question.objects.values_list("latex", "conversion_state").get(pk=locked.question_id) == (
        "approved earlier",
        "approved",
    )
    assert ReviewEvent.objects.filter(action="reject").count() == 2


def test_a_result_is_decided_once(results, reviewer):
    other = staff_user("otto", "reviewers")
    stale_copy = Item.objects.get(pk=results[0].pk)
    reviews.item_approve(item=results[0], user=reviewer)
    with pytest.raises(reviews.ReviewConflict):
        reviews.item_reject(item=stale_copy, user=other)
    assert ReviewEvent.objects.count() == 1
    assert Item.objects.get(pk=results[0].pk).review_status == Item.ReviewStatus.APPROVED


def test_bulk_approve_above_a_score(results, reviewer, monkeypatch):
    monkeypatch.setattr(reviews, "BULK_CHUNK", 1)  # several chunks even for a few rows
    reviews.item_reject(item=results[4], user=reviewer)  # 0.7, decided already

    approved = reviews.items_bulk_approve(items=Item.objects.all(), min_score=0.5, user=reviewer)

    assert approved == 2  # 0.9 and 0.5
    assert sorted(
        Item.objects.filter(review_status="approved").values_list("validation_score", flat=True)
    ) == [0.5, 0.9]
    assert ReviewEvent.objects.filter(action="approve").count() == 2
    for item in Item.objects.filter(review_status="approved").select_related("question"):
        assert item.question.latex == item.result_latex
        assert item.question.latex_locked
    assert scores(reviews.review_queue()) == [0.1, 0.3]


def test_review_page_starts_with_the_worst_result(client, results, reviewer):
    login(client, reviewer)
    page = client.get(REVIEW)
    assert page.status_code == 200
    initial = page.context["initial"]
    assert initial["item"]["id"] == results[1].pk  # score 0.1
    assert initial["remaining"] == 5
    html = page.content.decode()
    assert 'id="mc-review-data"' in html
    assert "vendor/mathlive/mathlive.min.js" in html
    assert "Content-Security-Policy" in page.headers

    opened = client.get(REVIEW, {"item": results[0].pk}).context["initial"]
    assert opened["item"]["id"] == results[0].pk


def test_decisions_through_json_return_the_next_result(client, results, reviewer):
    login(client, reviewer)
    worst, second = results[1], results[3]

    answer = client.post(
        decide_url(worst.pk),
        json.dumps({"action": "edit", "latex": "\\frac{1}{z}"}),
        content_type="application/json",
    ).json()
    assert answer["ok"] is True
    assert answer["item"]["id"] == second.pk
    assert answer["remaining"] == 4
    assert Question.objects.get(pk=worst.question_id).latex == "\\frac{1}{z}"

    again = client.post(
        decide_url(worst.pk), json.dumps({"action": "approve"}), content_type="application/json"
    )
    assert again.status_code == 409
    assert again.json()["item"]["id"] == second.pk

    bad = client.post(
        decide_url(second.pk), json.dumps({"action": "delete"}), content_type="application/json"
    )
    assert bad.status_code == 400
    empty = client.post(
        decide_url(second.pk),
        json.dumps({"action": "edit", "latex": ""}),
        content_type="application/json",
    )
    assert empty.status_code == 400
    assert "item" not in empty.json()

    assert client.get(decide_url(second.pk)).status_code == 405
    following = client.get(NEXT, {"exclude": f"{second.pk}"}).json()
    assert following["item"]["id"] == results[2].pk  # 0.5
    only_job = client.get(NEXT, {"job": second.job_id, "below": "0.2"}).json()
    assert only_job["item"] is None and only_job["remaining"] == 0


def test_payload_sanitises_mathml_and_flags_html_latex(client, reviewer):
    question = Question.objects.create(
        question_id="XSS",
        mathml=(
            '<math><mi href="javascript:alert(1)">x</mi><script>alert(2)</script>'
            '<annotation-xml encoding="text/html"><img src=x onerror=alert(3)></annotation-xml>'
            "</math>"
        ),
    )
    job = make_job([question])
    set_items(job, 1, status="needs_review", result_latex="\\href{javascript:alert(4)}{x}")
    login(client, reviewer)
    item = client.get(NEXT).json()["item"]
    assert item["mathml_html"] == "<math><mi>x</mi></math>"
    assert item["renderable"] is False
    assert item["mathml_source"] == question.mathml  # shown as text by the page


def test_bulk_approve_page_counts_then_approves(client, results, reviewer):
    login(client, reviewer)
    page = client.get(BULK, {"min_score": "0.6"})
    assert page.context["count"] == 2
    assert Item.objects.filter(review_status="approved").count() == 0
    done = client.post(BULK, {"min_score": "0.6"})
    assert done.status_code == 302
    assert Item.objects.filter(review_status="approved").count() == 2


def test_labeling_results_are_not_in_the_latex_review_queue(reviewer):
    job = make_job(make_questions(2, prefix="L"), kind=Job.Kind.LABEL)
    set_items(job, 2, status="succeeded", result_latex="x", validation_score=0.1)
    assert not reviews.review_queue().exists()


def test_bulk_approve_with_an_unknown_job_is_a_404_and_approves_nothing(client, results, reviewer):
    other = make_job(make_questions(2, prefix="O"), name="other")
    set_items(other, 2, status="succeeded", result_latex="x", validation_score=0.99)
    login(client, reviewer)
    for job in ("999999", "abc"):
        assert client.post(BULK, {"job": job, "min_score": "0"}).status_code == 404
        assert client.get(BULK, {"job": job, "min_score": "0"}).status_code == 404
        assert client.get(BULK, {"job": job}).status_code == 404
        assert client.get(REVIEW, {"job": job}).status_code == 404
        assert client.get(NEXT, {"job": job}).status_code == 404
    label_job = make_job(make_questions(1, prefix="L"), kind=Job.Kind.LABEL)
    assert client.post(BULK, {"job": label_job.pk, "min_score": "0"}).status_code == 404
    assert not Item.objects.filter(review_status="approved").exists()


def test_bulk_approve_with_a_job_approves_only_that_job(client, results, reviewer):
    other = make_job(make_questions(2, prefix="O"), name="other")
    set_items(other, 2, status="succeeded", result_latex="x", validation_score=0.99)
    login(client, reviewer)
    done = client.post(BULK, {"job": results[0].job_id, "min_score": "0.6"})
    assert done.status_code == 302
    approved = Item.objects.filter(review_status="approved")
    assert set(approved.values_list("job_id", flat=True)) == {results[0].job_id}
    assert approved.count() == 2


def test_bulk_approve_page_from_the_review_link_shows_no_error_before_submitting(
    client, results, reviewer
):
    login(client, reviewer)
    for params in ({}, {"job": results[0].job_id}, {"job": results[0].job_id, "below": "0.5"}):
        page = client.get(BULK, params)
        assert page.status_code == 200
        assert not page.context["form"].is_bound
        assert page.context["count"] is None
        assert b"errorlist" not in page.content
    page = client.get(BULK, {"job": results[0].job_id})
    assert page.context["form"]["job"].value() == str(results[0].job_id)
