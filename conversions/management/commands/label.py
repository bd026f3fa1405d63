"""`manage.py label`: label the rows of a CSV with an LLM (the old label.py, resumable).

    python manage.py label --input-csv pooled_data.csv [--schema default] [--model gpt-4o-mini]
        [--max-concurrent 10] [--mode test] [--skip-labeled] [--limit N] [--output-csv FILE]

The rows are imported into the question bank (or reused: an unchanged row is left as
it is), then labeled by a labeling job, the same job kind the admin starts: same engine,
limits, retries, checkpoints, stats and failure handling. The job runs in this process
with a progress bar. Ctrl-C (or SIGTERM) pauses it; the same command run again finds the
unfinished job for the same file and continues it, so no row is labeled twice.
--skip-labeled leaves out the rows that already have labels from this schema.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions import labeling, selectors, services
from conversions.converters.messages import shown
from conversions.endpoints import endpoint_option
from conversions.exporting import neutralise
from conversions.importing import FileSource, SourceError, import_file, layout_for
from conversions.jobsettings import TEST_MODE_ITEMS, JobSettings, default_model
from conversions.management.commands._report import (
    TranslatedCommand,
    category_label,
    format_stats,
    quiet_console,
)
from conversions.management.commands.convert import run_with_progress
from conversions.models import Endpoint, Item, Job, LabelSchema, Question, QuestionQuerySet
from conversions.preflight import check_backend_config

TEST_MODE_ROWS = TEST_MODE_ITEMS
ERROR_SAMPLES = 5
CHUNK = 1000
# SQLite refuses a statement with more than 32766 parameters: a larger selection is
# passed as ranges of consecutive ids (an import creates its rows with consecutive ids).
SQLITE_MAX_IN = 30_000
SQLITE_MAX_RANGES = 500


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Label the rows of a CSV (id and text columns, or a question export) with an LLM "
        "through a labeling job, and write the labeled CSV. Resumable: run it again after "
        "an interruption and it continues where it stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--input-csv",
            required=True,
            help=_("CSV to label: an id column and a text column (and/or mathml); UTF-8 or CP949."),
        )
        parser.add_argument(
            "--schema",
            default=labeling.DEFAULT_SCHEMA_NAME,
            help=_("Label schema name (default: default)."),
        )
        parser.add_argument(
            "--model",
            default="",
            help=_("Model (default: MATHCONV_DEFAULT_LABEL_MODEL, gpt-4o-mini)."),
        )
        parser.add_argument(
            "--max-concurrent",
            type=int,
            default=10,
            help=_("Concurrent API requests (default 10)."),
        )
        parser.add_argument(
            "--mode",
            choices=["full", "test"],
            default="full",
            help=_("test: label only the first %(n)s rows (default: full).")
            % {"n": TEST_MODE_ROWS},
        )
        parser.add_argument(
            "--skip-labeled",
            action="store_true",
            help=_("Leave out rows that already have labels from this schema (or a reviewer)."),
        )
        parser.add_argument(
            "--limit", type=int, default=None, help=_("Use only the first N rows of the CSV.")
        )
        parser.add_argument(
            "--output-csv",
            default="",
            help=_("Where to write the labeled CSV (default: <input>_labeled.csv beside it)."),
        )
        parser.add_argument(
            "--encoding",
            default=None,
            help=_("Encoding of the CSV (default: detect UTF-8/CP949)."),
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            help=_("Items claimed per batch (default 100)."),
        )
        parser.add_argument(
            "--rpm",
            type=int,
            default=None,
            help=_("Requests per minute allowed on the endpoint."),
        )
        parser.add_argument(
            "--tpm",
            type=int,
            default=None,
            help=_("Tokens per minute allowed on the endpoint."),
        )
        parser.add_argument(
            "--batch-api",
            action="store_true",
            help=_(
                "Batch API mode: send the requests as Batch API files (half the price, "
                "results within 24 hours); the command waits for them. Interrupted, run it "
                "again to wait on."
            ),
        )
        parser.add_argument(
            "--endpoint",
            default="",
            help=_(
                "The endpoint (see `manage.py endpoints list`) the job runs on; default: "
                "the one built from OPENAI_BASE_URL / OPENAI_API_KEY."
            ),
        )

    def handle(self, *args, **opts):
        with quiet_console():
            return self.handle_quietly(**opts)

    def handle_quietly(self, **opts):
        path = Path(opts["input_csv"]).resolve()
        try:
            schema = labeling.label_schema_get(opts["schema"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        model = opts["model"] or default_model(kind=Job.Kind.LABEL, backend=Job.Backend.OPENAI)
        # Refused before the rows are imported: a run that cannot label changes nothing.
        # The endpoint the job will run on, not this shell's default one.
        check_config(model, endpoint_option(opts.get("endpoint") or ""), opts["batch_api"])
        self.stdout.write("\n".join(import_rows(path, opts["encoding"])))
        refs = csv_question_ids(path, opts["encoding"])[: opts["limit"] or None]
        job, message = job_for_run(path, refs, schema=schema, model=model, opts=opts)
        self.stdout.write(message)
        if job is not None:
            run_with_progress(job, self.stderr)
            self.stdout.write(format_stats(selectors.job_stats(job=job)))
            self.stdout.write("\n".join(summary(job)))
        output = Path(opts["output_csv"] or path.with_name(f"{path.stem}_labeled.csv"))
        only_job_rows = job is not None and opts["mode"] == "test"
        written = write_labeled_csv(
            path,
            output,
            refs=refs,
            schema=schema,
            job=job,
            only_job_rows=only_job_rows,
            encoding=opts["encoding"],
        )
        self.stdout.write(_("Wrote %(n)s rows to %(path)s") % {"n": written, "path": output})
        if job is not None and job.status == Job.Status.FAILED:
            raise CommandError(
                _("Job %(job)s failed: %(error)s") % {"job": job.pk, "error": job.error_text}
            )
        if job is not None and job.batch_api and job.status in Job.ACTIVE_STATUSES:
            raise CommandError(
                _(
                    "Stopped waiting for the Batch API: run the same command again to wait "
                    "on and write the labels that came back."
                ),
                returncode=130,
            )
        if job is not None and job.status == Job.Status.PAUSED:
            raise CommandError(
                _("Interrupted: run the same command again to continue where it stopped."),
                returncode=130,
            )


# --- the steps, as functions the tests call too ---------------------------------------------


def import_rows(path: Path, encoding: str | None) -> list[str]:
    report = import_file(path, fmt="csv", encoding=encoding, allow_empty_mathml=True)
    if not report.ok:
        raise CommandError("\n".join(report.lines()))
    return report.lines()


def csv_question_ids(path: Path, encoding: str | None) -> list[str]:
    """The question ids of the CSV's rows, in file order (the import validated them)."""
    return [ref for ref, _row in csv_rows(path, encoding)]


def csv_rows(path: Path, encoding: str | None) -> Iterator[tuple[str, dict[str, object]]]:
    try:
        with FileSource(path, fmt="csv", encoding=encoding) as source, source.table() as table:
            id_column = layout_for(table.headers or []).fields["question_id"]  # CSV: a list
            for _number, row in table.rows:
                ref = str(row.get(id_column) or "").strip()
                if ref:
                    yield ref, row
    except SourceError as exc:
        raise CommandError(str(exc)) from None


def run_key(path: Path, *, schema: LabelSchema, model: str, opts: dict) -> dict:
    """What makes two runs the same run: file (and its content), schema, model, rows."""
    return {
        "source": "label_command",
        "input_csv": str(path),
        "sha256": file_digest(path),
        "schema": schema.name,
        "model": model,
        "limit": opts["limit"],
        "mode": opts["mode"],
        "batch_api": opts.get("batch_api", False),
    }


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resumable_job(key: dict, *, schema: LabelSchema, model: str) -> Job | None:
    """The unfinished job of an earlier, interrupted run of the same command, if any."""
    jobs = Job.objects.filter(kind=Job.Kind.LABEL, label_schema=schema, model=model).exclude(
        status__in=[Job.Status.COMPLETED, Job.Status.COMPLETED_WITH_ERRORS, Job.Status.CANCELLED]
    )
    return next((job for job in jobs.order_by("-id") if job.selection.get("run") == key), None)


def rows_to_label(refs: list[str], *, schema: LabelSchema, opts: dict) -> list[int]:
    """Question pks in file order, without the labeled ones (--skip-labeled), cut to test mode."""
    pks: list[int] = []
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start : start + CHUNK]
        found = Question.objects.filter(question_id__in=chunk)
        if opts["skip_labeled"]:
            found = labeling.questions_unlabeled(found, schema=schema)
        by_ref = dict(found.values_list("question_id", "pk"))
        pks += [by_ref[ref] for ref in chunk if ref in by_ref]
        if opts["mode"] == "test" and len(pks) >= TEST_MODE_ROWS:
            return pks[:TEST_MODE_ROWS]
    return pks


def questions_in(pks: list[int]) -> QuestionQuerySet:
    if connection.vendor != "sqlite" or len(pks) <= SQLITE_MAX_IN:
        return Question.objects.filter(pk__in=pks)
    runs: list[list[int]] = []
    for pk in sorted(set(pks)):
        if runs and pk == runs[-1][1] + 1:
            runs[-1][1] = pk
        else:
            runs.append([pk, pk])
    if len(runs) > SQLITE_MAX_RANGES:
        raise CommandError(
            _(
                "These rows are too scattered in the database for one SQLite query: use "
                "--limit, split the file, or use PostgreSQL."
            )
        )
    condition = Q()
    for first, last in runs:
        condition |= Q(pk__range=(first, last))
    return Question.objects.filter(condition)


def check_config(model: str, endpoint: Endpoint | None = None, batch_api: bool = False) -> None:
    try:
        check_backend_config(
            backend=Job.Backend.OPENAI, model=model, endpoint=endpoint, batch_api=batch_api
        )
    except services.ConfigurationError as exc:
        raise CommandError(str(exc)) from None


def create_job(key: dict, pks: list[int], *, schema: LabelSchema, model: str, opts: dict) -> Job:
    try:
        return services.job_create(
            job_settings=JobSettings(
                kind=Job.Kind.LABEL,
                backend=Job.Backend.OPENAI,
                model=model,
                batch_size=opts["batch_size"],
                max_concurrent=opts["max_concurrent"],
                rpm_limit=opts["rpm"],
                tpm_limit=opts["tpm"],
                test_mode=opts["mode"] == "test",
                label_schema=schema,
                name=_("label %(file)s") % {"file": Path(key["input_csv"]).name},
                endpoint=endpoint_option(opts.get("endpoint") or ""),
                batch_api=opts.get("batch_api", False),
            ),
            questions=questions_in(pks),
            selection={
                "run": key,
                "rows": len(pks),
                "skip_labeled": opts["skip_labeled"],
            },
            enqueue=False,
        )
    except services.ConfigurationError as exc:
        raise CommandError(str(exc)) from None


def job_for_run(
    path: Path, refs: list[str], *, schema: LabelSchema, model: str, opts: dict
) -> tuple[Job | None, str]:
    """The interrupted job of the same run to continue, else a new job, else nothing to do."""
    key = run_key(path, schema=schema, model=model, opts=opts)
    job = resumable_job(key, schema=schema, model=model)
    if job is not None:
        check_config(model, job.endpoint, job.batch_api)
        services.job_resume(job=job)
        return job, _("Continuing job %(job)s: %(n)s rows left to label.") % {
            "job": job.pk,
            "n": unfinished(job),
        }
    pks = rows_to_label(refs, schema=schema, opts=opts)
    if not pks:
        return None, _("Nothing to label: every row has labels already.")
    job = create_job(key, pks, schema=schema, model=model, opts=opts)
    return job, _(
        "Job %(job)s created: %(n)s rows to label with %(model)s (schema %(schema)s v%(version)s)."
    ) % {
        "job": job.pk,
        "n": job.total_items,
        "model": model,
        "schema": schema.name,
        "version": schema.version,
    }


def unfinished(job: Job) -> int:
    return job.items.filter(status__in=[Item.Status.PENDING, Item.Status.RUNNING]).count()


def summary(job: Job) -> list[str]:
    """The old script's closing lines: failure rate and up to 5 error samples."""
    stats = selectors.job_stats(job=job)
    counts = stats["counts"]
    success = stats["success"]  # the one definition: selectors.success_rate
    lines = [
        _(
            "Labeled %(labeled)s of %(total)s rows; %(flagged)s left for review (invalid "
            "answers), %(failed)s failed, %(cancelled)s cancelled. Success rate: %(rate)s."
        )
        % {
            "labeled": counts.get(Item.Status.SUCCEEDED, 0),
            "total": stats["total"],
            "flagged": counts.get(Item.Status.NEEDS_REVIEW, 0),
            "failed": counts.get(Item.Status.FAILED, 0),
            "cancelled": counts.get(Item.Status.CANCELLED, 0),
            "rate": success["text"],
        },
    ]
    samples = (
        job.items.exclude(error_category="")
        .select_related("question")
        .order_by("id")[:ERROR_SAMPLES]
    )
    if samples:
        lines.append(_("Error samples (up to %(n)s):") % {"n": ERROR_SAMPLES})
        lines += [
            f"  {i.question.question_id}: {category_label(i.error_category)}: {i.error_text[:200]}"
            for i in samples
        ]
    if unfinished(job) and job.status != Job.Status.PAUSED:
        lines.append(
            _(
                "Some rows are still held by an earlier, stopped run; their lease expires "
                "within %(s)s s. Run the command again then."
            )
            % {"s": settings.MATHCONV_LEASE_SECONDS}
        )
    return lines


# --- the labeled CSV ---------------------------------------------------------------------------


def write_labeled_csv(
    source: Path,
    output: Path,
    *,
    refs: list[str],
    schema: LabelSchema,
    job: Job | None,
    only_job_rows: bool = False,
    encoding: str | None = None,
) -> int:
    """The input rows (within --limit, or the job's rows) with their labels.

    A reviewer's correction wins over the model's labels.

    Label values come from a model, so cells a spreadsheet would read as formulas are
    neutralised as in the question export.
    """
    names = labeling.label_field_names(schema)
    label_columns = [f"label_{name}" for name in names] + [
        "label_status",
        "label_schema",
        "label_model",
        "label_error",
    ]
    wanted = set(refs)
    if only_job_rows and job is not None:
        wanted &= set(job.items.values_list("question__question_id", flat=True))
    output.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with output.open("w", encoding="utf-8-sig", newline="") as fp:
        writer = None
        rows = (pair for pair in csv_rows(source, encoding) if pair[0] in wanted)
        while chunk := [pair for _, pair in zip(range(CHUNK), rows, strict=False)]:
            details = label_details([ref for ref, _ in chunk], schema=schema, job=job)
            for ref, row in chunk:
                if writer is None:
                    columns = [c for c in row if c not in label_columns] + label_columns
                    writer = csv.DictWriter(fp, fieldnames=columns, extrasaction="ignore")
                    writer.writeheader()
                writer.writerow({**row, **details[ref]})
                written += 1
    return written


def label_details(refs: list[str], *, schema: LabelSchema, job: Job | None) -> dict[str, dict]:
    questions = {q.question_id: q for q in Question.objects.filter(question_id__in=refs)}
    items = {}
    if job is not None:
        # the error in LANGUAGE_CODE, the command's language (converters.messages.shown)
        items = {
            ref: (status, shown(message, reason))
            for ref, status, message, reason in job.items.filter(
                question__question_id__in=refs
            ).values_list("question__question_id", "status", "error_message", "error_reason")
        }
    names = labeling.label_field_names(schema)
    details = {}
    for ref in refs:
        question = questions[ref]
        meta = question.labels_meta or {}
        ours = question.labels_corrected is not None or meta.get("schema") == schema.name
        status, message = items.get(ref, ("", ""))
        row: dict[str, object] = {f"label_{name}": "" for name in names}
        if ours:
            values = labeling.label_columns(question, names)
            row.update({f"label_{name}": neutralise(v) for name, v in values.items()})
            status = "corrected" if question.labels_corrected is not None else "labeled"
            message = ""
        row.update(
            label_status=status or "not labeled",
            label_schema=f"{meta.get('schema')} v{meta.get('schema_version')}" if ours else "",
            label_model=meta.get("model", "") if ours else "",
            label_error=neutralise(message),
        )
        details[ref] = row
    return details
