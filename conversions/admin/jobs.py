"""Jobs in the admin: the job list, the live job page, its buttons and result exports.

The job list stays cheap on a million items: it counts each listed job's unfinished and
unsuccessful items with correlated subqueries on the (job, status) index instead of
aggregating the whole item table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Expression, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from conversions import exporting, selectors, services
from conversions.admin import dashboard
from conversions.admin.access import (
    RUN_JOBS,
    VIEW_JOBS,
    require_perm,
    with_csp,
)
from conversions.admin.lists import CappedCountPaginator
from conversions.models import Item, Job, ModelPrice

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import StrOrPromise, WithAnnotations

    class _ItemCounts(TypedDict):
        unfinished_items: int
        succeeded_items: int
        counted_items: int

    # A job of the list: JobAdmin.get_queryset annotates its item counts.
    ListedJob = WithAnnotations[Job, _ItemCounts]

UNFINISHED = Item.UNFINISHED_STATUSES
EXPORT_FORMATS = exporting.FORMATS
SAMPLE_CHARS = 300


def _items_in(statuses) -> Expression:
    """The number of the job's items in these statuses, as a correlated subquery.

    One equality count per status: each is an index-only range of (job, status), and
    PostgreSQL plans `status IN (...)` as a scan of all the job's items instead.
    """
    counts = [
        Subquery(
            Item.objects.filter(job=OuterRef("pk"), status=status)
            .order_by()
            .values("job")
            .annotate(n=Count("pk"))
            .values("n")
        )
        for status in statuses
    ]
    total: Expression = Coalesce(counts[0], 0)
    for count in counts[1:]:
        total = total + Coalesce(count, 0)
    return total


def progress_html(done: int, total: int):
    percent = int(100 * done / total) if total else 100
    return format_html(
        '<progress class="mc-progress" value="{}" max="{}"></progress>'
        ' <span class="mc-progress-label">{}%</span>',
        done,
        total or 1,
        percent,
    )


def failures_url(**params) -> str:
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
                unfinished_items=_items_in(UNFINISHED),
                succeeded_items=_items_in(selectors.RATE_SUCCEEDED),
                counted_items=_items_in(selectors.RATE_COUNTED),
            )
        )

    def get_actions(self, request):
        return {}  # deleting a job with a million items is not a list action

    def has_add_permission(self, request) -> bool:
        return False  # jobs are launched from the question list

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a job is steered with its buttons, not edited

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, job: ListedJob):
        return progress_html(job.total_items - job.unfinished_items, job.total_items)

    @admin.display(description=gettext_lazy("success rate"))
    def success_rate(self, job: ListedJob) -> str:
        # The one definition: selectors.success_rate (skipped and cancelled left out).
        return selectors.rate_text(job.succeeded_items, job.counted_items)

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
        with_series = request.GET.get("series") != "0" or job.is_final
        return JsonResponse(job_page_data(job, series=with_series), encoder=DjangoJSONEncoder)

    def control_view(self, request, object_id, op):
        return _control(request, self._job(request, object_id), op)

    def export_view(self, request, object_id, fmt):
        job = self._job(request, object_id)
        if fmt not in EXPORT_FORMATS:
            raise Http404
        try:
            return job_export_response(job, fmt)
        except exporting.ExportError as error:  # a cell XLSX cannot hold: nothing is sent
            messages.error(request, str(error))
            return redirect(reverse("admin:conversions_job_change", args=[job.pk]))


def job_page_data(job: Job, *, series: bool = True) -> dict:
    """What the live job page shows; the page polls it as JSON every two seconds.

    The throughput series (the costliest part on a large job) comes only when asked
    for: the page asks every few polls, and whenever the job has just finished.
    """
    stats = selectors.job_stats(job=job)
    for category, failure in stats["failures"].items():
        failure["url"] = failures_url(job=job.pk, error_category__exact=category)
        failure["label"] = str(Item.ErrorCategory(category).label)
        failure["samples"] = [Truncator(s).chars(SAMPLE_CHARS) for s in failure["samples"]]
    stats["status_label"] = str(Job.Status(stats["status"]).label)
    labels = {s: str(Item.Status(s).label) for s in stats["counts"]}
    stopping = job.status in (Job.Status.CANCELLED, Job.Status.PAUSED)
    if stopping and Item.Status.RUNNING in labels:
        # In flight when the job was cancelled or paused: the worker that holds them
        # ends them at its next check (or the reconciler, once their lease expires).
        labels[Item.Status.RUNNING] = str(_("Stopping"))
    stats["count_labels"] = labels
    stats["count_rows"] = [
        {"status": s, "label": labels[s], "count": n} for s, n in stats["counts"].items()
    ]
    unfinished = sum(stats["counts"].get(s, 0) for s in UNFINISHED)
    share = stats["prompt_cache"]["share"]
    stats["prompt_cache"]["share_text"] = "–" if share is None else f"{share:.1%}"
    return {
        "stats": stats,
        "series": selectors.job_throughput_series(job=job) if series else None,
        "failures_url": reverse("admin:conversions_item_failures") + f"?job={job.pk}",
        # The page stops polling only once nothing of the job moves any more: a
        # cancelled job's items in flight still end (cancelled or finished) after it,
        # and a cancelled Batch API job changes while its remote batches are cancelling.
        "final": job.is_final
        and not unfinished
        and not (stats["batch_api"] and stats["batch_api"]["open"]),
    }


# Each button: the service it calls, the message when it acted, the one when it did not.
JOB_CONTROLS = {
    "pause": (
        services.job_pause,
        gettext_lazy("Job paused."),
        gettext_lazy("Only a queued or running job can be paused."),
    ),
    "resume": (
        services.job_resume,
        gettext_lazy("Job resumed."),
        gettext_lazy("Only a paused or failed job can be resumed."),
    ),
    "cancel": (
        services.job_cancel,
        gettext_lazy("Job cancelled."),
        gettext_lazy("The job has already ended."),
    ),
}


@require_POST
def _control(request, job: Job, op: str):
    require_perm(request, RUN_JOBS)
    if op == "cancel" and request.POST.get("confirm") != "1":
        # Cancel asks first: this page without JavaScript, a confirm() dialog with it
        # (live.js adds confirm=1 once the operator agreed).
        unfinished = job.items.filter(status__in=UNFINISHED).count()
        context = {
            **admin.site.each_context(request),
            "opts": Job._meta,
            "job": job,
            "unfinished": unfinished,
            "title": _("Cancel job"),
        }
        return TemplateResponse(request, "admin/conversions/job/cancel_confirm.html", context)
    done: StrOrPromise
    refused: StrOrPromise
    if op == "retry":
        count = services.items_retry(job=job)
        acted = bool(count)
        done = _("%(n)d failed item(s) queued again.") % {"n": count}
        refused = _("There are no failed items to retry.")
    elif op in JOB_CONTROLS:
        service, done, refused = JOB_CONTROLS[op]
        acted = service(job=job)
    else:
        raise Http404
    if acted:
        messages.success(request, done)
    else:
        messages.warning(request, refused)
    return redirect("admin:conversions_job_change", job.pk)


# --- job results export (the rows and columns: exporting.py) ---------------------------


def job_export_response(job: Job, fmt: str):
    response: HttpResponse | StreamingHttpResponse
    if fmt == "json":
        response = StreamingHttpResponse(
            exporting.job_results_json_chunks(job), content_type="application/json"
        )
    elif fmt == "csv":
        response = StreamingHttpResponse(
            exporting.job_results_csv_lines(job), content_type="text/csv; charset=utf-8"
        )
    else:
        response = HttpResponse(
            exporting.job_results_xlsx(job), content_type=exporting.CONTENT_TYPES["xlsx"]
        )
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-results.{fmt}"'
    return response


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """The price table behind cost estimates and job costs (USD per million tokens)."""

    list_display = ("model", "input_per_mtok", "output_per_mtok", "batch_discount")
    search_fields = ("model",)
