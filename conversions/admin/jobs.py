"""Jobs and items in the admin: the job list, the live job page, failures and retries.

Lists stay cheap on a million items: the job list counts a job's unfinished and
unsuccessful items with correlated subqueries on the (job, status) index instead of
aggregating the whole item table, and the item list never counts past a cap.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from conversions import reviews, selectors, services
from conversions.admin import dashboard, review
from conversions.admin.access import (
    REVIEW_ITEMS,
    RUN_JOBS,
    VIEW_ITEMS,
    VIEW_JOBS,
    require_perm,
    with_csp,
)
from conversions.admin.pagination import CappedCountPaginator
from conversions.exporting import neutralise
from conversions.models import Item, Job
from conversions.sanitize import latex_is_renderable, redact_secrets, sanitize_mathml

UNFINISHED = (Item.Status.PENDING, Item.Status.RUNNING)
UNSUCCESSFUL = (Item.Status.FAILED, Item.Status.NEEDS_REVIEW, Item.Status.SKIPPED)
EXPORT_FORMATS = ("csv", "xlsx", "json")
EXPORT_PAGE = 2000
GROUP_SCAN = 5000  # distinct messages read to build the failure groups
SAMPLE_CHARS = 300


def _item_count(**filters) -> Coalesce:
    counted = (
        Item.objects.filter(job=OuterRef("pk"), **filters)
        .order_by()
        .values("job")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


def progress_html(done: int, total: int):
    percent = int(100 * done / total) if total else 100
    return format_html(
        '<progress class="mc-progress" value="{}" max="{}"></progress>'
        ' <span class="mc-progress-label">{}%</span>',
        done,
        total or 1,
        percent,
    )


def _failures_url(**params) -> str:
    query = {k: v for k, v in params.items() if v not in (None, "")}
    return reverse("admin:conversions_item_changelist") + "?" + urlencode(query)


class CssMedia:
    css = {"all": ["conversions/admin.css"]}


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "kind",
        "status",
        "backend",
        "model",
        "progress",
        "success_rate",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "kind", "backend")
    list_select_related = ("created_by",)
    search_fields = ("name",)
    sortable_by = ("created_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    list_per_page = 50
    Media = CssMedia

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                unfinished_items=_item_count(status__in=UNFINISHED),
                cancelled_items=_item_count(status=Item.Status.CANCELLED),
                unsuccessful_items=_item_count(status__in=UNSUCCESSFUL),
            )
        )

    def get_actions(self, request):
        return {}  # deleting a job with a million items is not a list action

    def has_add_permission(self, request) -> bool:
        return False  # jobs are launched from the question list

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a job is steered with its buttons, not edited

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, job: Job):
        return progress_html(job.total_items - job.unfinished_items, job.total_items)

    @admin.display(description=gettext_lazy("success rate"))
    def success_rate(self, job: Job) -> str:
        finished = job.total_items - job.unfinished_items - job.cancelled_items
        if finished <= 0:
            return "–"
        return f"{100 * (finished - job.unsuccessful_items) / finished:.1f}%"

    # --- the live job page and its endpoints -----------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard_view), name="conversions_job_dashboard"),
            path(
                "dashboard/data.json",
                wrap(self.dashboard_data_view),
                name="conversions_job_dashboard_data",
            ),
            path(
                "<path:object_id>/stats.json", wrap(self.stats_view), name="conversions_job_stats"
            ),
            path(
                "<path:object_id>/control/<str:op>/",
                wrap(self.control_view),
                name="conversions_job_control",
            ),
            path(
                "<path:object_id>/export/<str:fmt>/",
                wrap(self.export_view),
                name="conversions_job_export",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        return dashboard.dashboard_view(request, model_admin=self)

    def dashboard_data_view(self, request):
        return dashboard.dashboard_data_view(request)

    def _job(self, request, object_id) -> Job:
        require_perm(request, VIEW_JOBS)
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404
        return job

    @with_csp
    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self._job(request, object_id)
        data = job_page_data(job)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(job),
            "job": job,
            "stats": data["stats"],
            "page_data": data,
            "can_run": request.user.has_perm(RUN_JOBS),
            "export_formats": EXPORT_FORMATS,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/conversions/job/live.html", context)

    def stats_view(self, request, object_id):
        job = self._job(request, object_id)
        return JsonResponse(job_page_data(job), encoder=DjangoJSONEncoder)

    def control_view(self, request, object_id, op):
        return _control(request, self._job(request, object_id), op)

    def export_view(self, request, object_id, fmt):
        job = self._job(request, object_id)
        if fmt not in EXPORT_FORMATS:
            raise Http404
        return job_export_response(job, fmt)


def job_page_data(job: Job) -> dict:
    """What the live job page shows; the page polls it as JSON every two seconds."""
    stats = selectors.job_stats(job=job)
    for category, failure in stats["failures"].items():
        failure["url"] = _failures_url(job=job.pk, error_category__exact=category)
        failure["label"] = str(Item.ErrorCategory(category).label)
        failure["samples"] = [Truncator(s).chars(SAMPLE_CHARS) for s in failure["samples"]]
    stats["status_label"] = str(Job.Status(stats["status"]).label)
    stats["count_labels"] = {s: str(Item.Status(s).label) for s in stats["counts"]}
    return {
        "stats": stats,
        "series": selectors.job_throughput_series(job=job),
        "failures_url": reverse("admin:conversions_item_failures") + f"?job={job.pk}",
        "final": job.is_final,
    }


@require_POST
def _control(request, job: Job, op: str):
    require_perm(request, RUN_JOBS)
    if op == "pause":
        done, ok, no = (
            services.job_pause(job=job),
            _("Job paused."),
            _("Only a queued or running job can be paused."),
        )
    elif op == "resume":
        done, ok, no = (
            services.job_resume(job=job),
            _("Job resumed."),
            _("Only a paused or failed job can be resumed."),
        )
    elif op == "cancel":
        done, ok, no = (
            services.job_cancel(job=job),
            _("Job cancelled."),
            _("The job has already ended."),
        )
    elif op == "retry":
        count = services.items_retry(job=job)
        done = bool(count)
        ok = _("%(n)d failed item(s) queued again.") % {"n": count}
        no = _("There are no failed items to retry.")
    else:
        raise Http404
    messages.add_message(
        request, messages.SUCCESS if done else messages.WARNING, ok if done else no
    )
    return redirect("admin:conversions_job_change", job.pk)


# --- job results export ---------------------------------------------------------------

EXPORT_COLUMNS = (
    "item",
    "question_id",
    "status",
    "result_latex",
    "result_labels",
    "route",
    "cached",
    "validation_score",
    "error_category",
    "error_message",
    "review_status",
    "reviewed_latex",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "api_calls",
    "retries",
    "attempts",
    "finished_at",
)


def job_result_rows(job: Job):
    """Every item of the job as a plain row, read in primary-key pages."""
    items = (
        Item.objects.filter(job_id=job.pk)
        .order_by("pk")
        .values_list(
            "pk",
            "question__question_id",
            *[c for c in EXPORT_COLUMNS[2:]],
        )
    )
    last = 0
    while page := list(items.filter(pk__gt=last)[:EXPORT_PAGE]):
        for values in page:
            row = dict(zip(EXPORT_COLUMNS, values, strict=True))
            row["cost_usd"] = str(row["cost_usd"])
            row["finished_at"] = row["finished_at"].isoformat() if row["finished_at"] else None
            yield row
        last = page[-1][0]


def _cell(value):
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return neutralise("" if value is None else value)


class _Echo:
    def write(self, value):
        return value


def job_export_response(job: Job, fmt: str):
    filename = f"job-{job.pk}-results.{fmt}"
    disposition = f'attachment; filename="{filename}"'
    if fmt == "json":

        def chunks():
            yield "["
            for n, row in enumerate(job_result_rows(job)):
                yield ("\n" if n == 0 else ",\n") + json.dumps(row, ensure_ascii=False)
            yield "\n]\n"

        response = StreamingHttpResponse(chunks(), content_type="application/json")
    elif fmt == "csv":
        writer = csv.writer(_Echo())

        def lines():
            yield "\ufeff" + writer.writerow(EXPORT_COLUMNS)
            for row in job_result_rows(job):
                yield writer.writerow([_cell(row[c]) for c in EXPORT_COLUMNS])

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(
            _xlsx_bytes(job),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    response["Content-Disposition"] = disposition
    return response


def _xlsx_bytes(job: Job) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)
    sheet = book.create_sheet("results")
    sheet.append(EXPORT_COLUMNS)
    for row in job_result_rows(job):
        cells = [_cell(row[c]) for c in EXPORT_COLUMNS]
        sheet.append(
            [ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v for v in cells]
        )
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# --- items and failures -----------------------------------------------------------------


class JobListFilter(admin.SimpleListFilter):
    title = gettext_lazy("job")
    parameter_name = "job"
    recent = 20

    def lookups(self, request, model_admin):
        jobs = list(Job.objects.order_by("-id")[: self.recent])
        selected = self.value()
        if selected and selected.isdigit() and all(str(j.pk) != selected for j in jobs):
            jobs += list(Job.objects.filter(pk=int(selected)))
        return [(str(job.pk), f"#{job.pk} {job.name or job.get_kind_display()}") for job in jobs]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(job_id=int(value))


_VARIABLE_PARTS = re.compile(r"'[^']*'|\"[^\"]*\"|\b0x[0-9a-f]+\b|\d+(?:\.\d+)?", re.IGNORECASE)


def message_pattern(message: str) -> str:
    """A message with its variable parts (numbers, quoted values) blanked out."""
    pattern = _VARIABLE_PARTS.sub("…", message)
    return Truncator(" ".join(pattern.split())).chars(200)


def failure_groups(items) -> list[dict]:
    """Failed items grouped by category and message pattern, largest group first."""
    rows = (
        items.exclude(error_category="")
        .order_by()
        .values_list("error_category", "error_message")
        .annotate(n=Count("pk"))
        .order_by("-n")[:GROUP_SCAN]
    )
    groups: dict[tuple[str, str], dict] = {}
    for category, message, n in rows:
        key = (category, message_pattern(message))
        group = groups.get(key)
        if group is None:
            groups[key] = {
                "category": category,
                "category_label": str(Item.ErrorCategory(category).label),
                "pattern": key[1],
                "sample": Truncator(message).chars(SAMPLE_CHARS),
                "prefix": message[:100],
                "count": n,
            }
        else:
            group["count"] += n
            group["prefix"] = os.path.commonprefix([group["prefix"], message])
    return sorted(groups.values(), key=lambda g: -g["count"])


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "job",
        "question",
        "status",
        "error_category",
        "message_excerpt",
        "validation_score",
        "review_status",
        "attempts",
        "finished_at",
    )
    list_display_links = ("id",)
    list_filter = (JobListFilter, "status", "error_category", "review_status", "route")
    list_select_related = ("job", "question")
    search_fields = ("=question__question_id",)
    search_help_text = gettext_lazy("Exact question id.")
    ordering = ("-id",)
    sortable_by = ("id",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    list_per_page = 100
    actions = ["retry_selected"]
    Media = CssMedia
    fieldsets = (
        (
            None,
            {"fields": ("job", "question", "status", "route", "cached", "attempts", "batch_no")},
        ),
        (
            gettext_lazy("Result"),
            {
                "fields": (
                    "source_mathml",
                    "result_latex",
                    "latex_preview",
                    "validation_score",
                    "validation_reasons",
                )
            },
        ),
        (
            gettext_lazy("Failure"),
            {"fields": ("error_category", "error_message", "request_shown", "response_shown")},
        ),
        (
            gettext_lazy("Cost"),
            {
                "fields": (
                    "latency_ms",
                    "tokens_in",
                    "tokens_out",
                    "cost_usd",
                    "cost_saved_usd",
                    "api_calls",
                    "retries",
                )
            },
        ),
        (
            gettext_lazy("Review"),
            {
                "fields": (
                    "review_status",
                    "reviewed_latex",
                    "reviewed_by",
                    "reviewed_at",
                    "review_history",
                )
            },
        ),
        (gettext_lazy("Times"), {"fields": ("created_at", "started_at", "finished_at")}),
    )
    readonly_fields = tuple(f for _, opts in fieldsets for f in opts["fields"])

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # results change through retries and reviews, not the form

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm(RUN_JOBS)

    @admin.display(description=gettext_lazy("message"))
    def message_excerpt(self, item: Item) -> str:
        return Truncator(item.error_message).chars(80)

    @admin.display(description=gettext_lazy("source (rendered)"))
    def source_mathml(self, item: Item):
        safe = sanitize_mathml(item.question.mathml)
        if not safe:
            return "–"
        # nh3 output with an explicit MathML allow-list: the one place markup is trusted.
        return format_html('<div class="mc-mathml">{}</div>', mark_safe(safe))  # noqa: S308

    @admin.display(description=gettext_lazy("LaTeX (rendered)"))
    def latex_preview(self, item: Item):
        latex = item.reviewed_latex or item.result_latex
        if not latex:
            return "–"
        if not latex_is_renderable(latex):
            return _("Not rendered: the LaTeX uses commands that produce HTML.")
        return format_html('<math-field read-only class="mc-latex">{}</math-field>', latex)

    @admin.display(description=gettext_lazy("request excerpt"))
    def request_shown(self, item: Item):
        return format_html('<pre class="mc-excerpt">{}</pre>', redact_secrets(item.request_excerpt))

    @admin.display(description=gettext_lazy("response excerpt"))
    def response_shown(self, item: Item):
        return format_html(
            '<pre class="mc-excerpt">{}</pre>', redact_secrets(item.response_excerpt)
        )

    @admin.display(description=gettext_lazy("history"))
    def review_history(self, item: Item):
        events = item.review_events.select_related("user").order_by("-id")[:20]
        if not events:
            return "–"
        rows = [
            format_html(
                "<li>{} · {} · {}{}</li>",
                event.created_at.strftime("%Y-%m-%d %H:%M"),
                event.user or "–",
                event.get_action_display(),
                f" · {event.latex_after}" if event.latex_after else "",
            )
            for event in events
        ]
        return format_html("<ul class='mc-history'>{}</ul>", mark_safe("".join(rows)))  # noqa: S308

    @admin.action(description=gettext_lazy("Retry selected items"), permissions=["run"])
    def retry_selected(self, request, queryset):
        count = services.items_retry(items=queryset)
        self.message_user(request, _("%(n)d item(s) queued again.") % {"n": count})

    # --- failures, retries and review screens -----------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("failures/", wrap(self.failures_view), name="conversions_item_failures"),
            path(
                "failures/retry/",
                wrap(self.retry_category_view),
                name="conversions_item_retry_category",
            ),
            path(
                "<path:object_id>/retry/", wrap(self.retry_item_view), name="conversions_item_retry"
            ),
            *review.review_urls(self),
            *super().get_urls(),
        ]

    @with_csp
    def change_view(self, request, object_id, form_url="", extra_context=None):
        require_perm(request, VIEW_ITEMS)
        item = self.get_object(request, unquote(object_id))
        extra = {
            "can_retry": item is not None
            and request.user.has_perm(RUN_JOBS)
            and item.status in services.RETRYABLE_STATUSES,
            "can_review": item is not None
            and request.user.has_perm(REVIEW_ITEMS)
            and item.review_status in reviews.OPEN_REVIEW_STATUSES
            and item.status in reviews.REVIEWABLE_STATUSES
            and bool(item.result_latex),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("job", "question")

    @with_csp
    def failures_view(self, request):
        require_perm(request, VIEW_ITEMS)
        job = _job_param(request.GET.get("job"))
        category = request.GET.get("category", "")
        if category and category not in Item.ErrorCategory.values:
            category = ""
        failed = Item.objects.exclude(error_category="")
        if job:
            failed = failed.filter(job_id=job.pk)
        by_category = dict(
            failed.order_by().values_list("error_category").annotate(n=Count("pk")).order_by()
        )
        categories = [
            {
                "value": value,
                "label": label,
                "count": by_category.get(value, 0),
                "url": "?"
                + urlencode({k: v for k, v in (("job", job and job.pk), ("category", value)) if v}),
            }
            for value, label in Item.ErrorCategory.choices
            if by_category.get(value)
        ]
        groups = failure_groups(failed.filter(error_category=category) if category else failed)
        for group in groups:
            group["url"] = _failures_url(
                job=job and job.pk,
                error_category__exact=group["category"],
                error_message__startswith=group["prefix"],
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Failures"),
            "job": job,
            "category": category,
            "categories": categories,
            "groups": groups,
            "total": sum(by_category.values()),
            "can_run": request.user.has_perm(RUN_JOBS),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/conversions/item/failures.html", context)

    def retry_category_view(self, request):
        return _retry_category(request)

    def retry_item_view(self, request, object_id):
        return _retry_item(request, object_id)


def _job_param(value: str | None) -> Job | None:
    if not value or not value.isdigit():
        return None
    return Job.objects.filter(pk=int(value)).first()


@require_POST
def _retry_category(request):
    require_perm(request, RUN_JOBS)
    category = request.POST.get("category", "")
    if category not in Item.ErrorCategory.values:
        raise Http404
    job = _job_param(request.POST.get("job"))
    items = Item.objects.filter(job_id=job.pk) if job else Item.objects.all()
    count = services.items_retry(items=items, category=category)
    messages.success(
        request,
        _("%(n)d item(s) of category “%(category)s” queued again.")
        % {"n": count, "category": Item.ErrorCategory(category).label},
    )
    url = reverse("admin:conversions_item_failures")
    return redirect(url + (f"?job={job.pk}" if job else ""))


@require_POST
def _retry_item(request, object_id):
    require_perm(request, RUN_JOBS)
    item = get_object_or_404(Item, pk=unquote(object_id))
    if services.items_retry(items=Item.objects.filter(pk=item.pk)):
        messages.success(request, _("The item is queued again."))
    else:
        messages.warning(request, _("Only a failed or cancelled item can be retried."))
    return redirect("admin:conversions_item_change", item.pk)
