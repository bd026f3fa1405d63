"""The control room's front page: totals, recent jobs, trends and the queue's health."""

from __future__ import annotations

from typing import cast

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from conversions import selectors
from conversions.admin.access import VIEW_JOBS, require_perm, with_csp
from conversions.models import Job, Question

DAYS = selectors.TREND_DAYS
RECENT_JOBS = 10
# The trends read every item finished in the window (a million rows at scale), so they
# are computed at most once a minute per process; the queue's health is always fresh.
TRENDS_CACHE_S = 60


def dashboard_data(*, days: int = DAYS) -> dict:
    window = cast(
        "dict",  # what daily_trends returns (the cache's stub says Any | None)
        cache.get_or_set(
            f"mathconv:dashboard-trends:{days}",
            lambda: selectors.daily_trends(days=days),
            TRENDS_CACHE_S,
        ),
    )
    return {
        "overall": window["totals"],
        "daily": window["daily"],
        "computed_at": window["computed_at"],
        "queue": selectors.queue_health(),
        "jobs_by_status": _labelled(
            Job.objects.order_by().values_list("status").annotate(n=Count("pk")), Job.Status
        ),
        "questions_by_state": _labelled(
            Question.objects.order_by().values_list("conversion_state").annotate(n=Count("pk")),
            Question.ConversionState,
        ),
    }


def _labelled(rows, choices) -> list[dict]:
    counts = dict(rows)
    return [
        {"value": value, "label": str(label), "count": counts[value]}
        for value, label in choices.choices
        if counts.get(value)
    ]


@with_csp
def dashboard_view(request, *, model_admin):
    require_perm(request, VIEW_JOBS)
    data = dashboard_data()
    recent = model_admin.get_queryset(request).select_related("created_by")[:RECENT_JOBS]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": _("Control room"),
        "data": data,
        "computed_at": parse_datetime(data["computed_at"]),
        "recent_jobs": [
            {
                "job": job,
                "progress": model_admin.progress(job),
                "rate": model_admin.success_rate(job),
            }
            for job in recent
        ],
        "media": model_admin.media,
    }
    return TemplateResponse(request, "admin/conversions/dashboard.html", context)


def dashboard_data_view(request):
    require_perm(request, VIEW_JOBS)
    return JsonResponse(dashboard_data(), encoder=DjangoJSONEncoder)
