"""Stored XSS (issue 13's security suite): payloads in MathML, LaTeX, labels, error
messages, question text, names and review comments, then every admin page the resolver
has (tests/test_permissions.py's list) plus the import preview, in a real browser.

A payload that ran would set window.__xss (or call alert/confirm/prompt, which the
session records, or open a dialog). Nothing may have run on any page.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from conversions.models import (
    Item,
    Job,
    JobNotification,
    LabelSchema,
    Question,
    RecurringJob,
    ReviewEvent,
)
from tests import test_permissions as perms
from tests.adminutil import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

world = perms.world
everything = perms.everything

IMG = '<img src=x onerror="window.__xss=1">'
BREAKOUT = '"><script>window.__xss=2</script><svg onload="window.__xss=3">'
HREF = r"x+\href{javascript:window.__xss=4}{y}+\class{a}{b}"
MATHML = (
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><mrow>'
    '<maction actiontype="statusline"><mi>x</mi><mtext>javascript:window.__xss=5</mtext>'
    "</maction>"
    '<mi onmouseover="window.__xss=6" href="javascript:window.__xss=7">y</mi>'
    f"<mtext>{IMG}</mtext><script>window.__xss=8</script>"
    '<annotation-xml encoding="text/html"><img src=x onerror="window.__xss=9"></annotation-xml>'
    "</mrow></math>"
)
TEXT = IMG + BREAKOUT


def plant(objs: dict) -> None:
    """Put a payload in every text the pages show."""
    Question.objects.update(
        mathml=MATHML,
        text=TEXT,
        subject=BREAKOUT,
        grade=IMG,
        metadata={"note": TEXT},
        labels={"topic": TEXT},
        latex=HREF,
        source_latex=HREF,
    )
    Job.objects.update(name=TEXT, error_message=TEXT)
    RecurringJob.objects.update(name=TEXT[:150], subject=BREAKOUT[:50], last_message=TEXT)
    JobNotification.objects.update(last_error=TEXT)
    Item.objects.update(
        result_latex=HREF,
        reviewed_latex=HREF,
        error_message=TEXT,
        response_excerpt=TEXT,
        validation_reasons=[TEXT],
    )
    Item.objects.filter(pk=objs["label_item"]).update(
        result_labels={"grade": TEXT, "topic": TEXT}, status="succeeded"
    )
    Item.objects.filter(pk=objs["review_item"]).update(status="needs_review")
    ReviewEvent.objects.update(latex_after=HREF, comment=TEXT)
    LabelSchema.objects.update(name=TEXT[:100])


def assert_nothing_ran(session, name: str) -> None:
    session.page.wait_for_timeout(200)  # give an onerror/onload time to fire
    assert session.page.evaluate("window.__xss") == [], name
    assert session.dialogs == [], name
    injected = session.page.evaluate(
        """() => document.querySelectorAll(
            'math script, math img, math [href], math [onmouseover], annotation-xml,'
            + ' #content img[onerror], #content svg[onload],'
            + ' #content script:not([src]):not([type="application/json"])'
        ).length"""
    )
    assert injected == 0, name


def test_stored_payloads_run_on_no_page(open_session, everything, tmp_path):
    plant(everything)
    User.objects.create_superuser("root", password=PASSWORD)
    s = open_session("root")
    visited = []
    for name in perms.admin_url_names():
        # every page a superuser GETs with a 200 (the matrix's last column)
        if name in perms.MATRIX_METHOD or perms.MATRIX[name][-1] != 200:
            continue
        if name in ("jsi18n", "login", "conversions_job_export"):  # a download, not a page
            continue
        assert s.goto(perms.url_for(name, everything)).status == 200, name
        visited.append(name)
        assert_nothing_ran(s, name)
    for must in (
        "conversions_question_changelist",
        "conversions_question_change",
        "conversions_job_change",
        "conversions_job_dashboard",
        "conversions_item_change",
        "conversions_item_failures",
        "conversions_item_review",
        "conversions_label_review",
        "conversions_label_review_item",
        "conversions_reviewevent_changelist",
        "conversions_recurringjob_changelist",
        "conversions_recurringjob_change",
        "conversions_jobnotification_changelist",
    ):
        assert must in visited, must

    # The import preview shows the uploaded cells before anything is saved.
    upload = tmp_path / "evil.csv"
    upload.write_text(
        "question_id,mathml,text,subject\n"
        f'"{BREAKOUT.replace(chr(34), chr(34) * 2)}","{MATHML.replace(chr(34), chr(34) * 2)}",'
        f'"{TEXT.replace(chr(34), chr(34) * 2)}",x\n',
        encoding="utf-8",
    )
    s.goto(reverse("admin:conversions_question_import"))
    s.page.set_input_files("input[name=import_file]", str(upload))
    fmt = s.page.locator("select[name=format]")
    if fmt.count():
        fmt.select_option(label="csv")
    s.page.click("#content input[type=submit]")
    s.page.wait_for_load_state()
    assert "evil.csv" in s.page.content() or s.page.locator("table").count(), "no preview"
    assert_nothing_ran(s, "import preview")
