"""Every user-facing string of the project has a Korean translation.

The msgids are extracted from the project's Python files and templates as they are at
test time (Django's `makemessages`, run on a copy of the source so that the project's
locale/ is not touched), and compared with locale/ko/LC_MESSAGES/django.po by GNU
gettext's `msgcmp`, which reports every msgid that is missing, untranslated or fuzzy.
"""

import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KO_PO = ROOT / "locale" / "ko" / "LC_MESSAGES" / "django.po"
SOURCES = ["manage.py", "mathconv", "conversions", "templates"]


def message_before(lines: list[str], index: int) -> str:
    """The msgid (and msgctxt) lines of the entry whose msgstr is at lines[index]."""
    start = index
    while start > 0 and lines[start - 1].strip():
        start -= 1
    return " ".join(line for line in lines[start:index] if not line.startswith("#"))


@pytest.mark.skipif(not shutil.which("msgcmp"), reason="GNU gettext is not installed")
def test_every_project_string_has_a_korean_translation(tmp_path):
    copy = tmp_path / "src"
    copy.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    (copy / "locale").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MATHCONV_USE_TEST_DB"}
    env.update(
        DJANGO_SETTINGS_MODULE="mathconv.settings",
        MATHCONV_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL="",
        PYTHONPATH=str(copy),
    )
    extract = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "ko", "--no-location", "-v", "0"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert extract.returncode == 0, extract.stderr
    extracted = copy / "locale" / "ko" / "LC_MESSAGES" / "django.po"
    assert extracted.read_text().count("msgid ") > 100  # the extraction found the project

    compare = subprocess.run(["msgcmp", str(KO_PO), str(extracted)], capture_output=True, text=True)
    lines = extracted.read_text().splitlines()
    missing = [
        message_before(lines, int(m.group(1)) - 1)
        for m in re.finditer(
            r"django\.po:(\d+): this message is used but not defined", compare.stderr
        )
    ]
    assert compare.returncode == 0, "msgids without a Korean translation:\n" + "\n".join(
        missing or [compare.stderr]
    )


@pytest.mark.django_db
def test_korean_admin_names_the_site_and_the_queue_in_korean(client):
    from django.contrib.auth.models import Permission

    from tests.adminutil import PASSWORD, staff_user

    user = staff_user("viewer-of-tasks")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="django_q"))
    assert client.login(username=user.username, password=PASSWORD)
    page = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "mathconv 관리" in page and "Django" not in page.split("<body")[1].split("</header>")[0]
    for korean in ("작업 대기열 (django-q2)", "성공한 태스크", "실패한 태스크", "예약된 태스크"):
        assert korean in page
    for english in ("Django Q", "Successful tasks", "Failed tasks", "Scheduled tasks"):
        assert english not in page

    view_only = staff_user("only-views")
    view_only.user_permissions.add(Permission.objects.get(codename="view_success"))
    client.force_login(view_only)
    page = client.get("/admin/django_q/success/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "볼 성공한 태스크 선택" in page
    assert "보기위한" not in page


def test_the_compiled_catalog_is_the_catalog(tmp_path):
    """django.mo holds exactly what django.po says (compilemessages skips a .mo that is
    newer than its .po, so a merge can leave a stale one that Django then serves)."""
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(KO_PO)], check=True)
    with fresh.open("rb") as new, KO_PO.with_suffix(".mo").open("rb") as shipped:
        expected = gettext.GNUTranslations(new)._catalog  # type: ignore[attr-defined]
        actual = gettext.GNUTranslations(shipped)._catalog  # type: ignore[attr-defined]
    assert actual == expected, sorted(set(expected.items()) ^ set(actual.items()))[:5]
