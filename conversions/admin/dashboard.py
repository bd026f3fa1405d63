"""The control room's front page: totals, recent jobs, trends and the queue's health."""

from __future__ import annotations

from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from conversions import selectors
from conversions.admin.access import VIEW_JOBS, require_perm, with_csp
from conversions.models import Item, Job, Question

DAYS = 30
RECENT_JOBS = 10


def daily_series(*, days: int = DAYS) -> list[dict]:
    """Per day: finished items, success rate (cancelled left out) and cost."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        Item.objects.filter(finished_at__gte=since)
        .annotate(day=TruncDate("finished_at"))
        .order_by("day")
        .values("day")
        .annotate(
            items=Count("pk"),
            succeeded=Count("pk", filter=Q(status=Item.Status.SUCCEEDED)),
            cancelled=Count("pk", filter=Q(status=Item.Status.CANCELLED)),
            cost=Sum("cost_usd"),
        )
    )
    series = []
    for row in rows:
        finished = row["items"] - row["cancelled"]
        series.append(
            {
                "day": row["day"].isoformat(),
                "items": row["items"],
                "success_rate": row["succeeded"] / finished if finished else None,
                "cost_usd": float(row["cost"] or 0),
            }
        )
    return series


def dashboard_data(*, days: int = DAYS) -> dict:
    overall = selectors.overall_stats(days=days)
    return {
        "overall": {key: overall[key] for key in _OVERALL_KEYS},
        "daily": daily_series(days=days),
        "queue": selectors.queue_health(),
        "jobs_by_status": _labelled(
            Job.objects.order_by().values_list("status").annotate(n=Count("pk")), Job.Status
        ),
        "questions_by_state": _labelled(
            Question.objects.order_by().values_list("conversion_state").annotate(n=Count("pk")),
            Question.ConversionState,
        ),
    }


_OVERALL_KEYS = (
    "days",
    "items",
    "success_rate",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "api_calls",
    "cache",
    "latency_ms",
)


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
    recent = model_admin.get_queryset(request).select_related("created_by")[:RECENT_JOBS]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": _("Control room"),
        "data": dashboard_data(),
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
