import csv
import io
import json
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversions.importing.uploads import UploadStorage
from conversions.models import Question
from conversions.resources import IMPORT_FORMATS, QuestionCSV, QuestionJSON, QuestionXLSX

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
CHANGELIST = reverse("admin:conversions_question_changelist")
IMPORT = reverse("admin:conversions_question_import")
PROCESS_IMPORT = reverse("admin:conversions_question_process_import")
EXPORT = reverse("admin:conversions_question_export")
CSV_FORMAT = str(IMPORT_FORMATS.index(QuestionCSV))
JSON_FORMAT = str(IMPORT_FORMATS.index(QuestionJSON))


@pytest.fixture(autouse=True)
def upload_dir(settings, tmp_path):
    """Each test its own upload folder, so that leftovers are this test's own."""
    settings.MATHCONV_UPLOAD_DIR = tmp_path / "uploads"


def upload(client, name: str, content: bytes, fmt: str = CSV_FORMAT, **extra):
    data = {"resource": "0", "format": fmt, "import_file": SimpleUploadedFile(name, content)}
    return client.post(IMPORT, {**data, **extra})


def confirm(client, response, **extra):
    """Post the confirm form the dry-run preview rendered, as the browser would."""
    form = response.context["confirm_form"]
    data = {name: form.initial.get(name, "") for name in form.fields}
    return client.post(PROCESS_IMPORT, {**data, **extra})


def snapshot():
    return list(Question.objects.order_by("question_id").values())


def test_changelist_searches_filters_and_does_no_query_per_row(admin_client):
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(CHANGELIST, {"subject": "수학", "q": "Q"})
        assert response.status_code == 200
        return len(queries)

    for i in range(3):
        Question.objects.create(question_id=f"Q-{i}", mathml="<math/>", subject="수학", text="t")
    few = page_queries()
    for i in range(3, 40):
        Question.objects.create(question_id=f"Q-{i}", mathml="<math/>", subject="수학", text="t")
    assert page_queries() == few

    Question.objects.create(
        question_id="OTHER", mathml="<math/>", text="이차방정식의 근", grade="고1"
    )
    response = admin_client.get(CHANGELIST, {"q": "이차방정식"})
    assert [q.question_id for q in response.context["cl"].result_list] == ["OTHER"]
    response = admin_client.get(CHANGELIST, {"grade": "고1", "conversion_state": "unconverted"})
    assert [q.question_id for q in response.context["cl"].result_list] == ["OTHER"]
    assert response.context["cl"].show_full_result_count is False
    page = response.content.decode()
    assert f"href='{IMPORT}'" in page and f'href="{EXPORT}?' in page


def test_xlsx_upload(admin_client):
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["question_id", "mathml", "grade"])
    book.active.append([7, "<math><mn>7</mn></math>", "고2"])
    content = io.BytesIO()
    book.save(content)
    fmt = str(IMPORT_FORMATS.index(QuestionXLSX))
    confirm(admin_client, upload(admin_client, "q.xlsx", content.getvalue(), fmt=fmt))
    assert Question.objects.get(question_id="7").grade == "고2"


def test_mixed_file_is_rejected_in_the_preview_with_both_row_numbers(admin_client):
    Question.objects.create(question_id="Q-002", mathml="<math><mn>0</mn></math>", text="old")
    before = snapshot()

    response = upload(admin_client, "mixed.csv", (FIXTURES / "questions_mixed.csv").read_bytes())

    assert response.status_code == 200
    assert "confirm_form" not in response.context
    result = response.context["result"]
    assert [row.number for row in result.invalid_rows] == [4, 6]
    messages = [" ".join(row.error.messages) for row in result.invalid_rows]
    assert messages[0].startswith("invalid MathML: not well-formed XML")
    assert messages[1] == "duplicate question_id 'Q-001' (first seen in row 2)"
    page = response.content.decode()
    assert "Nothing was imported: fix these rows and upload the file again" in page
    # Each bad row's number and reason are on the page as text, not behind a badge.
    assert '<td class="mc-import-row">6</td>' in page
    assert "duplicate question_id &#x27;Q-001&#x27; (first seen in row 2)" in page
    assert "validation-error-count" not in page
    assert snapshot() == before


def test_a_bad_file_posted_straight_to_confirm_imports_nothing(admin_client):
    before = snapshot()
    storage = UploadStorage()
    storage.save((FIXTURES / "questions_mixed.csv").read_bytes())
    data = {
        "import_file_name": storage.name,
        "original_file_name": "mixed.csv",
        "format": CSV_FORMAT,
        "resource": "0",
    }

    response = admin_client.post(PROCESS_IMPORT, data)

    assert response.status_code == 302
    assert response["Location"] == IMPORT
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("Nothing was imported: bad rows 4, 6.")
    assert snapshot() == before


def test_good_file_previews_then_imports_and_reimport_skips(admin_client):
    content = (FIXTURES / "questions_good.csv").read_bytes()
    Question.objects.create(question_id="Q-101", mathml="<math><mi>z</mi></math>", latex="z")

    preview = upload(admin_client, "good.csv", content)

    assert [r.import_type for r in preview.context["result"].valid_rows()] == [
        "update",
        "new",
        "new",
    ]
    assert Question.objects.count() == 1  # the preview is a dry run
    response = confirm(admin_client, preview)
    assert response.status_code == 302
    assert response["Location"] == CHANGELIST
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message == "Import finished: 2 new, 1 updated, 0 deleted and 0 skipped questions."
    q101 = Question.objects.get(question_id="Q-101")
    assert q101.mathml == "<math><msup><mi>x</mi><mn>2</mn></msup></math>"
    assert q101.latex == ""  # a new MathML resets the stale LaTeX, as in import_questions
    assert q101.metadata == {"source": "교과서", "difficulty": "2"}

    again = upload(admin_client, "good.csv", content)
    assert [r.import_type for r in again.context["result"].valid_rows()] == ["skip"] * 3


def test_cp949_upload_is_decoded(admin_client):
    text = "question_id,mathml,text,subject,grade\nK-1,<math><mi>x</mi></math>,한글 문제,기하,고3\n"
    preview = upload(admin_client, "excel.csv", text.encode("cp949"))
    confirm(admin_client, preview)
    question = Question.objects.get(question_id="K-1")
    assert (question.text, question.subject) == ("한글 문제", "기하")


def test_text_only_documents_need_the_checkbox(admin_client):
    content = (FIXTURES / "labeling_documents.csv").read_bytes()
    refused = upload(admin_client, "docs.csv", content)
    assert [" ".join(r.error.messages) for r in refused.context["result"].invalid_rows] == [
        "missing required column: mathml",
        "rows without MathML are accepted only with --allow-empty-mathml"
        ' (in the admin: the box "Allow rows without MathML")',
    ]

    preview = upload(admin_client, "docs.csv", content, allow_empty_mathml="on")
    assert preview.context["confirm_form"].initial["allow_empty_mathml"] is True
    confirm(admin_client, preview)
    assert sorted(Question.objects.values_list("question_id", flat=True)) == [
        "doc-1",
        "doc-2",
        "doc-3",
    ]


def test_json_upload_with_varying_keys(admin_client):
    records = [
        {"question_id": "J-1", "mathml": "<math><mn>1</mn></math>", "metadata": {"a": 1}},
        {"question_id": "J-2", "mathml": "<math><mn>2</mn></math>", "text": "둘째"},
        {"question_id": "J-3", "mathml": "<math><mn>3"},
    ]
    body = json.dumps(records, ensure_ascii=False).encode()
    refused = upload(admin_client, "q.json", body, fmt=JSON_FORMAT)
    assert [r.number for r in refused.context["result"].invalid_rows] == [3]

    preview = upload(admin_client, "q.json", json.dumps(records[:2]).encode(), fmt=JSON_FORMAT)
    confirm(admin_client, preview)
    assert Question.objects.get(question_id="J-1").metadata == {"a": 1}
    assert Question.objects.get(question_id="J-2").text == "둘째"


def test_unreadable_upload_is_reported_on_the_form(admin_client):
    response = upload(admin_client, "x.csv", b"question_id,mathml\n\xff\xfe\xfa,x\n")
    errors = response.context["form"].errors["import_file"]
    assert errors == [
        "line 2 is not UTF-8 (nor is the file CP949): save the file as UTF-8, "
        "or give its encoding explicitly"
    ]


def test_admin_export_uses_the_neutralising_writer(admin_client):
    Question.objects.create(question_id="X-1", mathml="<math/>", text="=HYPERLINK(1)")
    response = admin_client.post(EXPORT, {"resource": "0", "format": "0"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0]["text"] == "'=HYPERLINK(1)"

    response = admin_client.post(EXPORT, {"resource": "0", "format": "2"})
    assert json.loads(response.content)[0]["text"] == "=HYPERLINK(1)"


def test_viewers_can_export_but_not_import(client):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_question"))
    client.force_login(viewer)
    assert client.get(CHANGELIST).status_code == 200
    assert client.get(IMPORT).status_code == 403
    assert client.post(PROCESS_IMPORT, {}).status_code == 403
    assert client.post(EXPORT, {"resource": "0", "format": "2"}).status_code == 200


def test_change_form_refuses_malformed_mathml(admin_client):
    question = Question.objects.create(question_id="F-1", mathml="<math><mi>x</mi></math>")
    url = reverse("admin:conversions_question_change", args=[question.pk])
    data = {
        "question_id": "F-1",
        "mathml": "<math><mi>x</mi>",
        "conversion_state": "unconverted",
        "metadata": "{}",
        "labels": "{}",
        "labels_corrected": "null",
        "labels_meta": "{}",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "not well-formed XML" in str(response.context["adminform"].form.errors["mathml"])
    question.refresh_from_db()
    assert question.mathml == "<math><mi>x</mi></math>"


def uploads() -> list[str]:
    folder = Path(settings.MATHCONV_UPLOAD_DIR)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_confirming_twice_or_from_a_stale_tab_imports_once_and_answers_clearly(admin_client):
    content = (FIXTURES / "questions_good.csv").read_bytes()
    preview = upload(admin_client, "good.csv", content)
    assert len(uploads()) == 1  # kept for the confirmation, in the shared folder

    first = confirm(admin_client, preview)
    assert first.status_code == 302 and first["Location"] == CHANGELIST
    imported = snapshot()
    assert len(imported) == 3
    assert uploads() == []

    for _attempt in range(2):  # a double click, then the stale tab again
        again = confirm(admin_client, preview)
        assert again.status_code == 302
        assert again["Location"] == IMPORT
        messages = [str(m) for m in get_messages(again.wsgi_request)]
        assert messages[-1].startswith("This upload was imported already or has expired")
        assert snapshot() == imported


def test_a_confirmation_cannot_name_a_file_outside_the_upload_folder(admin_client, tmp_path):
    target = tmp_path / "victim.csv"
    target.write_bytes((FIXTURES / "questions_good.csv").read_bytes())
    for name in (str(target), f"../../../../../../{target}", "../uploads", ""):
        data = {
            "import_file_name": name,
            "original_file_name": "x.csv",
            "format": CSV_FORMAT,
            "resource": "0",
        }
        response = admin_client.post(PROCESS_IMPORT, data)
        assert response.status_code in (200, 302)  # a form error or the "gone" message
        assert not Question.objects.exists()
    assert target.exists()  # neither read nor removed


def test_rejected_previews_keep_no_upload_and_stale_uploads_are_swept(admin_client, settings):
    upload(admin_client, "mixed.csv", (FIXTURES / "questions_mixed.csv").read_bytes())
    assert uploads() == []

    good = (FIXTURES / "questions_good.csv").read_bytes()
    upload(admin_client, "good.csv", good)  # previewed, never confirmed (tab closed)
    [abandoned] = uploads()
    stale = time.time() - settings.MATHCONV_UPLOAD_MAX_AGE_SECONDS - 60
    os.utime(Path(settings.MATHCONV_UPLOAD_DIR) / abandoned, (stale, stale))
    upload(admin_client, "good.csv", good)  # the next upload sweeps the stale one
    assert abandoned not in uploads() and len(uploads()) == 1


def test_an_upload_is_read_back_by_a_fresh_storage_as_another_web_process_would():
    from conversions.importing.uploads import UploadGone

    saved = UploadStorage()
    saved.save(b"question_id,mathml\n")
    assert Path(settings.MATHCONV_UPLOAD_DIR, saved.name).exists()
    other = UploadStorage(name=saved.name)  # what the confirming process builds
    assert other.read() == b"question_id,mathml\n"
    with pytest.raises(UploadGone):
        UploadStorage(name=saved.name).read()
