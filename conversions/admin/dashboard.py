"""The control room's front page: totals, recent jobs, trends and the queue's health."""

from __future__ import annotations

from datetime import timedelta

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import CharField, Count, F, Func, Q, Sum, Value
from django.db.models.functions import TruncDate
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from conversions import selectors
from conversions.admin.access import VIEW_JOBS, require_perm, with_csp
from conversions.models import Item, Job, Question

DAYS = 30
RECENT_JOBS = 10
# The trends read every item finished in the window (a million rows at scale), so they
# are computed at most once a minute per process; the queue's health is always fresh.
TRENDS_CACHE_S = 60


def _local_day():
    """The local calendar day of finished_at, as an SQL expression."""
    if connection.vendor == "sqlite":
        # TruncDate calls a Python function per row on SQLite (seconds for a million
        # rows); SQLite's own date() with the zone's offset does the same in C.
        offset = int(timezone.localtime().utcoffset().total_seconds())
        return Func(
            F("finished_at"),
            Value(f"{offset:+d} seconds"),
            function="date",
            output_field=CharField(),
        )
    return TruncDate("finished_at")


def trends(*, days: int = DAYS) -> dict:
    """Per day and in total over the window: items, success rate, tokens and cost."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        Item.objects.filter(finished_at__gte=since)
        .annotate(day=_local_day())
        .order_by("day")
        .values("day")
        .annotate(
            items=Count("pk"),
            succeeded=Count("pk", filter=Q(status=Item.Status.SUCCEEDED)),
            cancelled=Count("pk", filter=Q(status=Item.Status.CANCELLED)),
            hits=Count("pk", filter=Q(cached=True)),
            tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out"),
            api_calls=Sum("api_calls"),
            cost=Sum("cost_usd"),
            saved=Sum("cost_saved_usd"),
        )
    )
    rows = list(rows)
    total = {key: sum(row[key] or 0 for row in rows) for key in _SUMMED}
    return {
        "days": days,
        "daily": [
            {
                "day": str(row["day"]),
                "items": row["items"],
                "success_rate": _rate(row["succeeded"], row["items"] - row["cancelled"]),
                "cost_usd": float(row["cost"] or 0),
            }
            for row in rows
        ],
        "totals": {
            "days": days,
            "items": total["items"],
            "success_rate": _rate(total["succeeded"], total["items"] - total["cancelled"]),
            "tokens_in": total["tokens_in"],
            "tokens_out": total["tokens_out"],
            "api_calls": total["api_calls"],
            "cache_hits": total["hits"],
            "cost_usd": float(total["cost"]),
            "saved_usd": float(total["saved"]),
        },
        "computed_at": timezone.now().isoformat(),
    }


_SUMMED = (
    "items",
    "succeeded",
    "cancelled",
    "hits",
    "tokens_in",
    "tokens_out",
    "api_calls",
    "cost",
    "saved",
)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def dashboard_data(*, days: int = DAYS) -> dict:
    window = cache.get_or_set(
        f"mathconv:dashboard-trends:{days}", lambda: trends(days=days), TRENDS_CACHE_S
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
