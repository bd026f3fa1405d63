"""Under Korean (LANGUAGE_CODE=ko, or an active ko translation) every line the job
commands print is Korean: convert, label, job, monitor, import_questions and
export_questions, their stats report (_report.py), their errors and their --help.

A line passes when, after taking out what is data rather than words (paths, code in
backticks, numbers, model names, the ids and names the test chose, option values such
as `rules`), no English word of three letters or more is left.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.utils import translation

from conversions import services
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question
from conversions.results import ItemResult
from tests.jobutil import make_questions
from tests.settings import subprocess_env
from tests.test_label_command import ensure_default_schema
from tests.test_routing import glyph

pytestmark = pytest.mark.django_db

# Names, not words: option values and products a Korean operator types as they are.
ALLOWED = {
    "rules",
    "openai",
    "hybrid",
    "LLM",
    "API",
    "mathconv",
    "django",
    "Ctrl",
    "CSV",
    "XLSX",
    "JSON",
    "MathML",
    "XML",
    "DOCTYPE",
    "LaTeX",
    "gpt",
    "mini",
    "csv",
    "xlsx",
    "json",
    "URL",
    "utf",  # encodings: utf-8, cp949
}
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def english_words(text: str, *, also_allowed: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(word, line) for every English word left on a line once data is taken out."""
    found = []
    for line in text.splitlines():
        data = re.sub(r"`[^`]*`", " ", line)  # commands to type
        data = re.sub(r"\S*/\S*", " ", data)  # paths, URLs, "1/2"
        data = re.sub(r"\S+\.(?:csv|xlsx|json|log)\b", " ", data)  # file names
        data = re.sub(r"\[[a-z_]+\]", " ", data)  # an error category's code
        data = re.sub(r"--[\w-]+", " ", data)  # options: --from-db
        data = re.sub(r"'[^']*'", " ", data)  # quoted values: 'txt'
        data = re.sub(r"\w+_\w+", " ", data)  # column and setting names: question_id
        for word in re.findall(r"[A-Za-z]{3,}", data):
            if word not in ALLOWED and word not in also_allowed:
                found.append((word, line))
    return found


def run(*args: str) -> str:
    out, err = StringIO(), StringIO()
    with translation.override("ko"):
        call_command(*args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def refused(*args: str) -> str:
    with translation.override("ko"), pytest.raises(CommandError) as caught:
        call_command(*args, stdout=StringIO(), stderr=StringIO())
    return str(caught.value)


def assert_korean(text: str, **kwargs) -> None:
    assert text.strip(), "nothing printed"
    assert not english_words(text, **kwargs), english_words(text, **kwargs)
    for line in text.splitlines():
        if line.strip() and not re.fullmatch(r"[\s\[\]#.\d%/]+", line):
            assert HANGUL.search(line), f"no Korean on the line {line!r}"


def test_the_check_finds_english():
    assert english_words("  items       3 done of 3: 3 succeeded") != []
    assert english_words("작업 3 생성: 항목 3개, 백엔드 rules.") == []
    assert english_words("  로그        /tmp/var/logs/job-000003.log") == []


def test_import_convert_job_monitor_and_export_print_korean(tmp_path, settings):
    settings.OPENAI_API_KEY = ""
    source = tmp_path / "bank.csv"
    with source.open("w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(["question_id", "mathml"])
        writer.writerows([[f"K{n}", f"<math><mn>{n}</mn></math>"] for n in range(1, 5)])
    assert_korean(run("import_questions", str(source)))
    assert_korean(run("import_questions", str(source), "--dry-run"))
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "question_id,mathml\n,<math><mn>1</mn></math>\nB1,<math><mn>2</mn></math>\n"
        "B1,<math><mn>3</mn></math>\nB2,'<math><mi onclick=\"x\">y</mi></math>'\n"
        "B3,<!DOCTYPE math [<!ENTITY a 'b'>]><math><mi>&a;</mi></math>\n",
        encoding="utf-8",
    )
    rejected = refused("import_questions", str(bad))
    assert_korean(rejected, also_allowed={"onclick"})  # quoted data
    assert "엔티티 선언이 있는 DOCTYPE은 허용되지 않습니다" in rejected
    assert_korean(refused("import_questions"))

    converted = run("convert", "--backend", "rules", "--wait", "--name", "K")
    assert_korean(converted)
    job = Job.objects.get()
    assert f"작업 {job.pk} 생성: 항목 4개, 백엔드 rules." in converted
    assert "성공률      100.0 % (4/4)" in converted
    assert_korean(run("convert", "--name", "K2"))  # queued, not waited for

    for action in ("stats", "export", "retry"):
        assert_korean(run("job", action, str(job.pk)))
    assert_korean(refused("job", "pause", str(job.pk)))
    assert_korean(refused("job", "resume", str(job.pk)))
    assert_korean(refused("job", "cancel", str(job.pk)))
    assert_korean(refused("job", "stats", "999"))
    queued = Job.objects.exclude(pk=job.pk).get()
    assert_korean(run("job", "pause", str(queued.pk)))
    assert_korean(run("job", "resume", str(queued.pk)))
    assert_korean(run("job", "cancel", str(queued.pk)))
    assert_korean(refused("job", "retry", str(job.pk), "--backend", "hybrid"))

    assert_korean(run("monitor", str(job.pk), "--once"))
    assert_korean(run("monitor", "--once"))
    assert_korean(run("export_questions", str(tmp_path / "out.xlsx")))
    assert_korean(refused("export_questions", str(tmp_path / "out.txt")))


def test_failures_and_statuses_in_the_stats_are_korean():
    make_questions(3)
    job = services.job_create(
        job_settings=JobSettings(backend="rules", name="K"),
        questions=Question.objects.all(),
        selection={},
        enqueue=False,
    )
    batch = services.items_claim(job=job, owner="w", limit=3)
    services.outcomes_record(
        job=job,
        owner="w",
        results=[
            ItemResult(
                item_id=item.pk,
                question_id=item.question_id,
                status=Item.Status.FAILED,
                error_category="timeout",
                error_message="시간 초과",
            )
            for item in batch.items
        ],
    )
    services.job_finish_if_done(job=job)
    text = run("job", "stats", str(job.pk))
    assert_korean(text)
    assert "  실패        시간 초과 [timeout] 3개: 시간 초과" in text
    assert "오류와 함께 완료" in text


def test_label_prints_korean(tmp_path, llm):
    ensure_default_schema()
    source = tmp_path / "docs.csv"
    source.write_text(
        "id,text\n" + "".join(f"D{n},삼각형 {n}의 넓이\n" for n in range(3)), encoding="utf-8"
    )
    text = run("label", "--input-csv", str(source))
    assert_korean(text, also_allowed={"default"})
    assert "라벨을 붙일 행 3개" in text and "개 행을 썼습니다" in text
    assert_korean(run("label", "--input-csv", str(source), "--skip-labeled"))
    assert_korean(
        refused("label", "--input-csv", str(source), "--endpoint", "nowhere"),
        also_allowed={"nowhere", "default"},
    )


@pytest.mark.parametrize(
    "name", ["convert", "label", "job", "monitor", "import_questions", "export_questions"]
)
def test_help_of_every_option_is_korean(name):
    # The project's own options; argparse's and Django's common options are theirs.
    common = {"help", "version", "verbosity", "settings", "pythonpath", "traceback"}
    common |= {"no_color", "force_color", "skip_checks"}
    with translation.override("ko"):
        command = load_command_class("conversions", name)
        parser = command.create_parser("manage.py", name)
        texts = [str(command.help)] + [
            str(action.help) for action in parser._actions if action.dest not in common
        ]
        shown = parser.format_help()  # what --help prints: argparse needs text, not lazy
    for text in texts:
        assert HANGUL.search(text), f"{name}: {text!r}"
        assert " ".join(text.split()) in " ".join(shown.split())


def manage(*args: str) -> subprocess.CompletedProcess:
    """A command as an operator runs it: its own process, LANGUAGE_CODE=ko, no key."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=Path(__file__).resolve().parent.parent,
        env=subprocess_env(LANGUAGE_CODE="ko", OPENAI_API_KEY="", LOG_LEVEL="INFO"),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.django_db(transaction=True)
def test_in_its_own_process_with_language_code_ko_everything_on_the_terminal_is_korean():
    # Stdout and stderr: the command's lines, the progress bar, and no English log line
    # (the job's log file keeps those: "로그" names it).
    make_questions(4)
    make_questions(2, prefix="G", mathml=glyph)  # refused by the rules: logged failures
    result = manage("convert", "--backend", "rules", "--wait", "--name", "K")
    assert result.returncode == 0, result.stderr
    # The failure samples are the items' stored reasons, from the rules converter, shown
    # in LANGUAGE_CODE (converters/messages.py); the element's name stays as it is.
    assert_korean(result.stdout, also_allowed={"mglyph"})
    assert "지원하지 않는 요소 <mglyph>" in result.stdout
    assert_korean(result.stderr)
    assert "실패        잘못된 출력 [invalid_output] 2개" in result.stdout
    job = Job.objects.get()
    assert (
        "unsupported element <mglyph>"
        in Path(re.search(r"로그\s+(\S+)", result.stdout).group(1)).read_text()
    )
    result = manage("job", "retry", str(job.pk))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert_korean(result.stdout)
    result = manage("convert", "--help")
    assert result.returncode == 0, result.stderr
    assert "문제 은행에 MathML -> LaTeX 변환 작업을 만들고 대기열에 넣습니다." in result.stdout
    result = manage("job", "stats", "424242")
    assert result.returncode == 1
    assert "작업 424242이(가) 없습니다." in result.stderr, result.stderr
