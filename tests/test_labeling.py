"""Labeling: schemas, answer checking, the LabelTask, storing and correcting labels, and a
labeling job over real HTTP (the fake OpenAI server) on the real database."""

from __future__ import annotations

import csv
import io
import json
import random

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.urls import reverse

from conversions import exporting, labeling, services, tasks
from conversions.engine.labeling import (
    InvalidLabels,
    LabelSpec,
    LabelTask,
    check_labels,
    json_schema,
)
from conversions.engine.retry import InvalidInput, InvalidOutput
from conversions.engine.types import WorkItem
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, LabelSchema, Question, ReviewEvent
from mathconv_dev.fakeopenai import input_key, schema_instance

SPEC = LabelSpec(
    name="small",
    version=3,
    instructions="Label the question.",
    fields=(
        {"name": "unit", "type": "choice", "choices": ["분수", "소수", "함수"]},
        {"name": "difficulty", "type": "integer", "min": 1, "max": 5, "description": "1-5"},
        {"name": "keywords", "type": "keywords", "max_items": 3},
        {"name": "note", "type": "text"},
    ),
)
GOOD = {"unit": "분수", "difficulty": 2, "keywords": ["약분"], "note": "ok"}


# --- the engine side: plain data, no database ---------------------------------------------


def test_schema_becomes_a_strict_json_schema_with_the_allowed_values():
    task = LabelTask(SPEC)
    response_format = task.response_format()
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "labels_small"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"] == {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["분수", "소수", "함수"]},
            "difficulty": {"type": "integer", "minimum": 1, "maximum": 5, "description": "1-5"},
            "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "note": {"type": "string"},
        },
        "required": ["unit", "difficulty", "keywords", "note"],
        "additionalProperties": False,
    }
    assert task.kind == "label"
    assert task.prompt_version == "label-v1"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({**GOOD, "unit": "not-a-valid-choice"}, "unit: 'not-a-valid-choice' is not one of"),
        ({**GOOD, "unit": 1}, "unit: 1 is not one of"),
        ({**GOOD, "difficulty": 6}, "difficulty: 6 is outside 1-5"),
        ({**GOOD, "difficulty": 0}, "difficulty: 0 is outside 1-5"),
        ({**GOOD, "difficulty": 2.5}, "difficulty: 2.5 is not a whole number"),
        ({**GOOD, "difficulty": True}, "difficulty: True is not a whole number"),
        ({**GOOD, "difficulty": "2"}, "difficulty: '2' is not a whole number"),
        ({**GOOD, "keywords": ["a", "b", "c", "a"]}, "keywords: 4 keywords, at most 3"),
        ({**GOOD, "keywords": "a, b"}, "keywords: expected a list of strings"),
        ({**GOOD, "keywords": ["x" * 61]}, "keywords: a keyword is longer than 60"),
        ({**GOOD, "note": "x" * 501}, "note: longer than 500"),
        ({**GOOD, "extra": 1}, "unknown fields: extra"),
        ({k: v for k, v in GOOD.items() if k != "unit"}, "missing fields: unit"),
        ([GOOD], "the answer is not a JSON object"),
    ],
)
def test_an_answer_outside_the_schema_is_invalid_output(answer, reason):
    task = LabelTask(SPEC)
    item = WorkItem(item_id=1, ref="q1", text="1/2 + 1/4")
    with pytest.raises(InvalidOutput) as caught:
        task.parse(item, json.dumps(answer))
    assert str(caught.value).startswith(reason)


def test_a_valid_answer_is_kept_normalised():
    task = LabelTask(SPEC)
    item = WorkItem(item_id=1, ref="q1", text="1/2 + 1/4")
    answer = {**GOOD, "keywords": [" 약분 ", "통분", "약분"], "note": " fine "}
    assert task.parse(item, json.dumps(answer)) == {
        "unit": "분수",
        "difficulty": 2,
        "keywords": ["약분", "통분"],
        "note": "fine",
    }
    with pytest.raises(InvalidOutput, match="not JSON"):
        task.parse(item, '{"unit": "분수"')


def test_the_prompt_carries_text_and_formulas():
    task = LabelTask(SPEC)
    converted = WorkItem(
        item_id=1, ref="q1", text="다음을 계산하시오.", mathml="<math/>", hint="\\frac{1}{2}"
    )
    system, user = task.build_messages(converted)
    assert system["role"] == "system" and "Label the question." in system["content"]
    assert "difficulty (a whole number from 1 to 5): 1-5" in system["content"]
    assert user["content"] == (
        "Label this question.\n<<<QUESTION\n다음을 계산하시오.\n\n"
        "Formulas (LaTeX): \\frac{1}{2}\nQUESTION>>>"
    )
    raw = WorkItem(item_id=2, ref="q2", mathml="<math><mn>2</mn></math>")
    assert "Formulas (MathML): <math><mn>2</mn></math>" in task.build_messages(raw)[1]["content"]
    with pytest.raises(InvalidInput):
        task.build_messages(WorkItem(item_id=3, ref="q3", text="  "))
    assert task.estimate_tokens(converted) > 400  # the answer's budget is reserved too


def test_the_fake_servers_answers_are_checked_exactly():
    """The fake server's right answers pass the check and its wrong ones never do.

    (A free text field has no wrong value, so the schema here has none.)
    """
    spec = LabelSpec("no-text", 1, "Label it.", SPEC.fields[:3])
    schema = json_schema(spec)
    for seed in range(200):
        assert check_labels(spec, schema_instance(schema, random.Random(seed)))
        with pytest.raises(InvalidLabels):
            check_labels(spec, schema_instance(schema, random.Random(seed), wrong=True))


# --- schemas in the database ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_default_schema_ships_with_the_migrations():
    schema = LabelSchema.objects.get(name="default")
    assert labeling.label_fields_errors(schema.fields) == []
    assert labeling.label_field_names(schema) == ["unit", "difficulty", "skill_type", "keywords"]
    fields = {f["name"]: f for f in schema.fields}
    assert fields["difficulty"]["min"] == 1 and fields["difficulty"]["max"] == 5
    assert {"일차방정식", "미분", "확률"} <= set(fields["unit"]["choices"])
    assert labeling.label_task(schema).spec.version == schema.version


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "Fields must be a non-empty JSON list"),
        ([], "Fields must be a non-empty JSON list"),
        (["unit"], "Field 1 is not a JSON object"),
        ([{"name": "Unit", "type": "text"}], "Field 1: name must be lower-case"),
        ([{"name": "a", "type": "text"}, {"name": "a", "type": "text"}], "name 'a' is used twice"),
        ([{"name": "a", "type": "date"}], "type must be one of choice, integer, keywords, text"),
        ([{"name": "a", "type": "choice", "choices": []}], "choices must be a non-empty list"),
        ([{"name": "a", "type": "choice", "choices": ["x", "x"]}], "choices contain a value twice"),
        ([{"name": "a", "type": "integer", "min": 5, "max": 1}], "min and max must be whole"),
        ([{"name": "a", "type": "integer", "min": 1}], "min and max must be whole"),
        ([{"name": "a", "type": "keywords", "max_items": 0}], "max_items must be a whole number"),
        ([{"name": "a", "type": "text", "choices": ["x"]}], "unknown keys for a text field"),
    ],
)
def test_bad_fields_are_refused_with_the_reason(fields, problem):
    errors = labeling.label_fields_errors(fields)
    assert any(problem in error for error in errors), errors
    with pytest.raises(ValidationError):
        labeling.validate_label_fields(fields)


@pytest.mark.django_db
def test_the_schema_admin_validates_fields_and_versions_changes(admin_client):
    url = reverse("admin:conversions_labelschema_add")
    data = {"name": "mini", "instructions": "Label it.", "fields": json.dumps(list(SPEC.fields))}
    bad = {**data, "fields": json.dumps([{"name": "a", "type": "integer", "min": 3, "max": 1}])}
    response = admin_client.post(url, bad)
    assert response.status_code == 200
    assert "min and max must be whole numbers" in response.content.decode()
    assert not LabelSchema.objects.filter(name="mini").exists()

    assert admin_client.post(url, data).status_code == 302
    schema = LabelSchema.objects.get(name="mini")
    assert schema.version == 1
    change = reverse("admin:conversions_labelschema_change", args=[schema.pk])
    page = admin_client.get(change).content.decode()
    assert "&quot;additionalProperties&quot;: false" in page  # the request's JSON schema

    admin_client.post(change, data)  # nothing changed: same version
    schema.refresh_from_db()
    assert schema.version == 1
    admin_client.post(change, {**data, "instructions": "Label it well."})
    schema.refresh_from_db()
    assert schema.version == 2


# --- storing, correcting, filtering, exporting ------------------------------------------------


def _label_job(schema: LabelSchema, questions, **options) -> Job:
    return services.job_create(
        job_settings=JobSettings(
            kind=Job.Kind.LABEL, backend=Job.Backend.OPENAI, label_schema=schema, **options
        ),
        questions=questions,
        selection={"test": True},
        enqueue=False,
        check_config=False,
    )


DEFAULT_LABELS = {"unit": "분수", "difficulty": 2, "skill_type": "계산", "keywords": ["약분"]}


@pytest.mark.django_db
def test_model_labels_and_reviewer_corrections_are_kept_apart(admin_user):
    schema = LabelSchema.objects.get(name="default")
    question = Question.objects.create(question_id="q1", mathml="", text="1/2 + 1/4")
    job = _label_job(schema, Question.objects.all())
    item = job.items.get()

    labeling.questions_labels_store(job=job, results=[(question.pk, item.pk, DEFAULT_LABELS)])
    question.refresh_from_db()
    assert question.labels == DEFAULT_LABELS
    meta = question.labels_meta
    assert (meta["schema"], meta["schema_version"], meta["model"]) == ("default", 1, "gpt-4o-mini")
    assert (meta["prompt_version"], meta["job"], meta["item"]) == ("label-v1", job.pk, item.pk)

    with pytest.raises(ValidationError, match="difficulty: 9 is outside 1-5"):
        labeling.labels_correct(question=question, labels={**DEFAULT_LABELS, "difficulty": 9})
    corrected = {**DEFAULT_LABELS, "difficulty": 4}
    labeling.labels_correct(question=question, labels=corrected, user=admin_user, comment="harder")
    question.refresh_from_db()
    item.refresh_from_db()
    assert question.labels == DEFAULT_LABELS  # the model's output stays as it was
    assert question.labels_corrected == corrected == question.effective_labels
    assert item.reviewed_labels == corrected and item.review_status == Item.ReviewStatus.EDITED
    event = ReviewEvent.objects.get(item=item)
    assert (event.action, event.labels_after, event.user) == ("labels", corrected, admin_user)
    # The provenance credits the reviewer now; the model's is kept apart.
    meta = question.labels_meta
    assert (meta["source"], meta["reviewed_by"], meta["schema"]) == ("reviewer", "admin", "default")
    assert "model" not in meta and meta["model_labels"]["model"] == "gpt-4o-mini"

    # A later job rewrites the model's labels and keeps the correction (and its credit)...
    again = _label_job(schema, Question.objects.all())
    newer = {**DEFAULT_LABELS, "unit": "소수"}
    labeling.questions_labels_store(job=again, results=[(question.pk, again.items.get().pk, newer)])
    question.refresh_from_db()
    assert (question.labels, question.labels_corrected) == (newer, corrected)
    assert question.labels_meta["reviewed_by"] == "admin"
    assert question.labels_meta["model_labels"]["job"] == again.pk
    # ...unless the operator asks to overwrite reviewed results.
    overwrite = _label_job(schema, Question.objects.all(), overwrite_reviewed=True)
    labeling.questions_labels_store(
        job=overwrite, results=[(question.pk, overwrite.items.get().pk, newer)]
    )
    question.refresh_from_db()
    assert (question.labels, question.labels_corrected) == (newer, None)
    assert "source" not in question.labels_meta and question.labels_meta["job"] == overwrite.pk

    # Clearing a correction gives the model's labels their credit back.
    labeling.labels_correct(question=question, labels=corrected, user=admin_user)
    labeling.labels_correction_clear(question=question)
    question.refresh_from_db()
    assert (
        question.labels_meta["model"] == "gpt-4o-mini" and "reviewed_by" not in question.labels_meta
    )


@pytest.mark.django_db
def test_a_reviewer_corrects_labels_in_the_question_admin(admin_client, admin_user):
    schema = LabelSchema.objects.get(name="default")
    question = Question.objects.create(question_id="q1", mathml="", text="1/2 + 1/4")
    job = _label_job(schema, Question.objects.all())
    item = job.items.get()
    labeling.questions_labels_store(job=job, results=[(question.pk, item.pk, DEFAULT_LABELS)])
    url = reverse("admin:conversions_question_change", args=[question.pk])
    form = {
        "question_id": "q1",
        "mathml": "",
        "text": "1/2 + 1/4",
        "conversion_state": "unconverted",
        "metadata": "{}",
        "labels": json.dumps({"unit": "hacked"}),  # model output is read only here
    }

    bad = {**DEFAULT_LABELS, "unit": "not-a-unit"}
    response = admin_client.post(url, {**form, "labels_corrected": json.dumps(bad)})
    assert response.status_code == 200
    assert (
        "unit: &#x27;not-a-unit&#x27; is not one of the allowed values" in response.content.decode()
    )

    good = {**DEFAULT_LABELS, "skill_type": "추론"}
    response = admin_client.post(url, {**form, "labels_corrected": json.dumps(good)})
    assert response.status_code == 302, response.context["adminform"].form.errors
    question.refresh_from_db()
    assert (question.labels, question.labels_corrected) == (DEFAULT_LABELS, good)
    event = ReviewEvent.objects.get()
    assert (event.item_id, event.user, event.labels_after) == (item.pk, admin_user, good)


@pytest.mark.django_db
def test_reviewers_fix_flagged_labels_and_approve_labeled_ones(client):
    schema = LabelSchema.objects.get(name="default")
    flagged_q = Question.objects.create(question_id="flagged", mathml="", text="<b>3/4</b>")
    labeled_q = Question.objects.create(question_id="labeled", mathml="", text="0.5 + 0.25")
    job = _label_job(schema, Question.objects.all())
    flagged = job.items.get(question=flagged_q)
    flagged.status, flagged.error_category = Item.Status.NEEDS_REVIEW, "invalid_output"
    flagged.error_message = "unit: 'not-a-valid-choice' is not one of the allowed values"
    flagged.response_excerpt = '{"unit": "not-a-valid-choice"}'
    flagged.save()
    labeled = job.items.get(question=labeled_q)
    labeled.status, labeled.result_labels = Item.Status.SUCCEEDED, DEFAULT_LABELS
    labeled.save()
    labeling.questions_labels_store(job=job, results=[(labeled_q.pk, labeled.pk, DEFAULT_LABELS)])

    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.groups.add(Group.objects.get(name="viewers"))
    client.force_login(viewer)
    assert client.get(reverse("admin:conversions_label_review")).status_code == 403
    reviewer = User.objects.create_user("reviewer", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="reviewers"))
    client.force_login(reviewer)
    schemas = client.get(reverse("admin:conversions_labelschema_changelist")).content.decode()
    assert f'href="{reverse("admin:conversions_label_review")}"' in schemas

    queue = client.get(reverse("admin:conversions_label_review")).content.decode()
    assert ">flagged</a>" in queue and ">labeled</a>" not in queue
    queue = client.get(reverse("admin:conversions_label_review"), {"all": "1"}).content.decode()
    assert ">flagged</a>" in queue and ">labeled</a>" in queue

    url = reverse("admin:conversions_label_review_item", args=[flagged.pk])
    page = client.get(url).content.decode()
    assert "&lt;b&gt;3/4&lt;/b&gt;" in page  # the question text is escaped
    assert "is not one of the allowed values" in page
    good = {"unit": "분수", "difficulty": "3", "skill_type": "추론", "keywords": "약분; 통분, 분수"}
    response = client.post(url, {**good, "difficulty": "9"})
    assert response.status_code == 200 and response.context["form"].errors["difficulty"]
    response = client.post(url, {**good, "unit": "not-a-valid-choice"})
    assert response.status_code == 200 and response.context["form"].errors["unit"]

    response = client.post(url, good)
    assert response.status_code == 302
    flagged_q.refresh_from_db()
    fixed = {
        "unit": "분수",
        "difficulty": 3,
        "skill_type": "추론",
        "keywords": ["약분", "통분", "분수"],
    }
    assert (flagged_q.labels, flagged_q.labels_corrected) == ({}, fixed)
    flagged.refresh_from_db()
    assert (flagged.review_status, flagged.reviewed_by) == (Item.ReviewStatus.EDITED, reviewer)

    labeled_url = reverse("admin:conversions_label_review_item", args=[labeled.pk])
    assert client.post(labeled_url, {"approve": "1"}).status_code == 302
    labeled.refresh_from_db()
    labeled_q.refresh_from_db()
    assert labeled.review_status == Item.ReviewStatus.APPROVED
    assert labeled_q.labels_corrected == DEFAULT_LABELS  # a later job will not replace them
    assert list(ReviewEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "labels",
        "approve",
    ]


@pytest.mark.django_db
def test_questions_can_be_filtered_by_label(admin_client):
    Question.objects.create(question_id="fraction", mathml="", text="a", labels=DEFAULT_LABELS)
    Question.objects.create(
        question_id="corrected",
        mathml="",
        text="b",
        labels=DEFAULT_LABELS,
        labels_corrected={**DEFAULT_LABELS, "unit": "미분", "difficulty": 5},
    )
    Question.objects.create(question_id="unlabeled", mathml="", text="c")
    url = reverse("admin:conversions_question_changelist")

    def shown(**params) -> set[str]:
        response = admin_client.get(url, params)
        assert response.status_code == 200
        return {q.question_id for q in response.context["cl"].result_list}

    assert shown(label_unit="분수") == {"fraction"}
    assert shown(label_unit="미분") == {"corrected"}
    assert shown(label_difficulty="2") == {"fraction"}
    assert shown(label_difficulty="5") == {"corrected"}
    assert shown(label_skill_type="계산") == {"fraction", "corrected"}
    assert shown(labels="none") == {"unlabeled"}
    assert shown(labels="model") == {"fraction"}
    assert shown(labels="corrected") == {"corrected"}


@pytest.mark.django_db
def test_labels_are_exported_with_the_questions():
    meta = {"schema": "default", "schema_version": 1, "model": "gpt-4o-mini"}
    corrected = {**DEFAULT_LABELS, "difficulty": 4}
    Question.objects.create(
        question_id="q1",
        mathml="",
        text="a",
        labels=DEFAULT_LABELS,
        labels_corrected=corrected,
        labels_meta=meta,
    )
    rows = list(
        csv.DictReader(
            io.StringIO(exporting.export_bytes(Question.objects.all(), "csv").decode("utf-8-sig"))
        )
    )
    assert "labels" not in rows[0]  # one column per label field, not one JSON cell
    assert rows[0]["label_difficulty"] == "4" and rows[0]["label_unit"] == "분수"
    assert rows[0]["label_keywords"] == "약분"
    assert json.loads(rows[0]["labels_meta"]) == meta
    record = json.loads(exporting.export_bytes(Question.objects.all(), "json"))[0]
    assert (record["labels_model"], record["labels_corrected"]) == (DEFAULT_LABELS, corrected)


# --- a labeling job over real HTTP ---------------------------------------------------------------


@pytest.fixture
def fake_server(fake_openai):
    fake_openai.configure(wrong_rate=0.05, seed=1)
    return fake_openai


@pytest.fixture
def openai_settings(settings, fake_server):
    settings.OPENAI_BASE_URL = fake_server.base_url
    settings.OPENAI_API_KEY = "test-key-for-the-fake-server"
    return settings


@pytest.mark.django_db
def test_a_labeling_job_labels_or_flags_every_row_and_stores_nothing_invalid(
    fake_server, openai_settings
):
    schema = LabelSchema.objects.get(name="default")
    spec = labeling.label_spec(schema)
    rows = [
        Question(question_id=f"doc-{n:03d}", mathml="", text=f"문서 {n}: 2x + {n} = 10 을 푸시오.")
        for n in range(200)
    ]
    # Forced faults on top of the 5 % random ones: always wrong (flagged after one retry),
    # and wrong once (labeled by the retry). One row has formulas as LaTeX and MathML.
    for n in (10, 20, 30):
        rows[n].text += " fake:wrong*2"
    for n in (40, 50):
        rows[n].text += " fake:wrong*1"
    rows[60].mathml = "<math><mfrac><mn>1</mn><mn>2</mn></mfrac></math>"
    rows[60].latex = "\\frac{1}{2}"
    Question.objects.bulk_create(rows)

    job = _label_job(schema, Question.objects.all(), max_concurrent=8, batch_size=50)
    assert job.model == "gpt-4o-mini" and job.prompt_version == "label-v1"
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED

    items = {i.question.question_id: i for i in job.items.select_related("question")}
    assert len(items) == 200
    flagged = {ref for ref, i in items.items() if i.status == Item.Status.NEEDS_REVIEW}
    labeled = {ref for ref, i in items.items() if i.status == Item.Status.SUCCEEDED}
    assert flagged | labeled == set(items)  # every row labeled or flagged
    assert {"doc-010", "doc-020", "doc-030"} <= flagged
    assert {"doc-040", "doc-050"} <= labeled
    assert items["doc-040"].api_calls == 2 and items["doc-040"].retries == 1

    for ref in flagged:  # flagged: asked twice, nothing stored, the reason kept
        item = items[ref]
        assert (item.error_category, item.api_calls) == ("invalid_output", 2)
        assert item.result_labels is None and item.response_excerpt
        assert item.question.labels == {} and item.question.labels_meta == {}
    for question in Question.objects.all():  # nothing invalid stored anywhere
        if question.question_id in labeled:
            assert check_labels(spec, question.labels) == question.labels
            assert question.labels == items[question.question_id].result_labels
            assert question.labels_meta["job"] == job.pk

    # Every wrong answer the server gave cost one more call or flagged its row.
    stats = fake_server.stats()
    calls = sum(i.api_calls for i in items.values())
    assert stats["requests"] == calls
    assert stats["wrong"] == (calls - 200) + len(flagged)
    assert stats["wrong"] > len(flagged) + 2  # the random 5 % happened too
    converted = items["doc-060"].question
    user_text = LabelTask(spec).build_messages(
        WorkItem(item_id=0, ref="", text=converted.text, hint=converted.latex)
    )[1]["content"]
    assert "Formulas (LaTeX): \\frac{1}{2}" in user_text
    assert stats["per_input"][input_key(user_text)] == items["doc-060"].api_calls

    # Flagged rows can be retried (admin or CLI); the forced faults are spent by now.
    assert services.items_retry(job=job, category="invalid_output") == len(flagged)
    job.refresh_from_db()
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    assert Question.objects.exclude(labels={}).count() == 200
