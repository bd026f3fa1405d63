"""The review screen: MathML next to its LaTeX, one result after another, no reloads.

The page loads once; each decision is POSTed as JSON and the answer carries the next
result of the queue. The source MathML reaches the page only through the nh3 allow-list
(conversions.sanitize) and is inserted as sanitised markup; everything else (LaTeX,
messages, names) is set as text by the script.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions import reviews, stem_reviews
from conversions.admin.access import REVIEW_ITEMS, require_perm, with_csp
from conversions.admin.lists import CappedCountPaginator
from conversions.models import Item, Job, ReviewEvent
from conversions.sanitize import latex_for_output, latex_is_renderable, sanitize_mathml

REMAINING_CAP = 1000
HISTORY = 10
RECENT_JOBS = 30


class QueueFilter(forms.Form):
    job = forms.TypedChoiceField(
        label=gettext_lazy("job"), required=False, coerce=int, empty_value=None
    )
    below = forms.FloatField(
        label=gettext_lazy("score below"), required=False, min_value=0.0, max_value=1.0
    )
    skipped = forms.BooleanField(label=gettext_lazy("include skipped"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        jobs = Job.objects.filter(kind=Job.Kind.CONVERT).order_by("-id")[:RECENT_JOBS]
        self.fields["job"].choices = [("", _("all jobs"))] + [
            (job.pk, f"#{job.pk} {job.name or job.get_kind_display()}") for job in jobs
        ]
        # A job older than the recent ones, reached through a link, stays selectable.
        selected = str(self.data.get("job") or "") if self.is_bound else ""
        known = {str(value) for value, _label in self.fields["job"].choices}
        if selected.isdigit() and selected not in known:
            self.fields["job"].choices += [(int(selected), f"#{selected}")]

    def selected_job(self) -> Job | None:
        """The job the filter names, None for "all jobs".

        A job id that names no conversion job (unknown, deleted, a labeling job) is a 404,
        never "all jobs": a scope that cannot be resolved must not widen to everything.
        """
        data = self.cleaned_data if self.is_valid() else {}
        if self.is_bound and "job" in self.errors:
            raise Http404(_("No such conversion job."))
        if not data.get("job"):
            return None
        return get_object_or_404(Job, pk=data["job"], kind=Job.Kind.CONVERT)

    def queue(self):
        data = self.cleaned_data if self.is_valid() else {}
        return reviews.review_queue(
            job=self.selected_job(),
            include_skipped=bool(data.get("skipped")),
            max_score=data.get("below"),
        )

    def query_string(self) -> str:
        data = self.cleaned_data if self.is_valid() else {}
        params = {k: v for k, v in data.items() if v not in (None, "", False)}
        if params.get("skipped"):
            params["skipped"] = "1"
        return urlencode(params)


def item_payload(item: Item) -> dict:
    question = item.question
    history = (
        ReviewEvent.objects.filter(question_id=question.pk)
        .select_related("user")
        .order_by("-id")[:HISTORY]
    )
    return {
        "id": item.pk,
        "question_id": question.question_id,
        "question_url": reverse("admin:conversions_question_change", args=[question.pk]),
        "item_url": reverse("admin:conversions_item_change", args=[item.pk]),
        "job": item.job_id,
        "job_name": str(item.job),
        "job_url": reverse("admin:conversions_job_change", args=[item.job_id]),
        "text": Truncator(question.text).chars(2000),
        "mathml_html": sanitize_mathml(question.mathml),
        "mathml_source": question.mathml[:20_000],
        "latex": latex_for_output(item.result_latex),
        "renderable": latex_is_renderable(item.result_latex),
        "question_latex": latex_for_output(question.latex),
        "locked": question.latex_locked,
        "score": item.validation_score,
        # stored language-neutrally, shown in the request's language (issue 12)
        "reasons": item.reasons_text[:10],
        "route": item.get_route_display() if item.route else "",
        "status": item.get_status_display(),
        "review_status": item.get_review_status_display(),
        "stem": stem_reviews.stem_payload(item),
        "history": [
            {
                "at": event.created_at.isoformat(),
                "user": str(event.user) if event.user else "",
                "action": event.get_action_display(),
                "latex": latex_for_output(event.latex_after),
            }
            for event in history
        ],
    }


def _next(queue, exclude: list[int]) -> dict:
    item = queue.exclude(pk__in=exclude).select_related("question", "job").first()
    remaining = queue[: REMAINING_CAP + 1].count()
    return {
        "item": item_payload(item) if item else None,
        "remaining": remaining,
        "remaining_capped": remaining > REMAINING_CAP,
    }


def _exclude(value: str | None) -> list[int]:
    return [int(v) for v in (value or "").split(",") if v.isdigit()][:200]


@with_csp
def review_page(request, *, model_admin):
    require_perm(request, REVIEW_ITEMS)
    filters = QueueFilter(request.GET or None)
    queue = filters.queue() if filters.is_bound else reviews.review_queue()
    if request.GET.get("item", "").isdigit():
        # Opened from an item page: that item first, whatever its place in the queue.
        first = get_object_or_404(
            Item.objects.select_related("question", "job"), pk=request.GET["item"]
        )
        initial = {**_next(queue, [first.pk]), "item": item_payload(first)}
    else:
        initial = _next(queue, [])
    query = filters.query_string() if filters.is_bound else ""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": _("Review"),
        "filters": filters,
        "initial": initial,
        "next_url": reverse("admin:conversions_item_review_next") + (f"?{query}" if query else ""),
        "decide_url": reverse("admin:conversions_item_review_decide", args=[0]),
        "query": query,
        "bulk_url": reverse("admin:conversions_item_review_bulk"),
        "media": model_admin.media,
    }
    return TemplateResponse(request, "admin/conversions/item/review.html", context)


def review_next(request):
    require_perm(request, REVIEW_ITEMS)
    queue = QueueFilter(request.GET).queue()
    return JsonResponse(
        _next(queue, _exclude(request.GET.get("exclude"))), encoder=DjangoJSONEncoder
    )


DECISIONS: dict[str, Callable[..., ReviewEvent]] = {
    "approve": stem_reviews.item_approve,  # a stem's fixes so far are approved with it
    "reject": reviews.item_reject,
    "skip": reviews.item_skip,
    "edit": reviews.item_edit_approve,
    "formula": stem_reviews.item_formula_edit,  # one formula of a stem
}


def review_decide(request, item_id: int):
    require_perm(request, REVIEW_ITEMS)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = {}
    action = body.get("action") if isinstance(body, dict) else None
    if action not in DECISIONS:
        return JsonResponse({"ok": False, "error": _("Unknown action.")}, status=400)
    item = get_object_or_404(Item, pk=item_id)
    kwargs = {"item": item, "user": request.user}
    if action in ("edit", "formula"):
        kwargs["latex"] = str(body.get("latex") or "")
    if action == "formula":
        kwargs["index"] = body.get("index")
    if action != "skip":
        kwargs["comment"] = str(body.get("comment") or "")[:1000]
    status = 200
    try:
        event = DECISIONS[action](**kwargs)
        answer = {
            "ok": True,
            "message": _("%(action)s: %(question)s")
            % {"action": event.get_action_display(), "question": item.question.question_id},
        }
    except reviews.InvalidReview as exc:
        return JsonResponse({"ok": False, "error": str(exc)}, status=400)
    except reviews.ReviewConflict as exc:
        answer, status = {"ok": False, "error": str(exc)}, 409
    queue = QueueFilter(request.GET).queue()
    answer.update(_next(queue, _exclude(request.GET.get("exclude"))))
    if status == 200 and event.action == ReviewEvent.Action.FORMULA:
        # one formula of a stem fixed, others still to fix: the same stem again
        item = Item.objects.select_related("question", "job").get(pk=item.pk)
        answer["item"] = item_payload(item)
    return JsonResponse(answer, status=status, encoder=DjangoJSONEncoder)


class BulkApproveForm(QueueFilter):
    min_score = forms.FloatField(
        label=gettext_lazy("approve results with a score of at least"),
        min_value=0.0,
        max_value=1.0,
        initial=0.95,
    )


def _bulk_form(request) -> BulkApproveForm:
    """The bulk approve form, bound only once the reviewer asked for a count or approval.

    The review page links here with its filters (?job=3); that alone is not a submission,
    so the form shows them as initial values instead of "This field is required.".
    """
    if request.method == "POST":
        return BulkApproveForm(request.POST)
    if "min_score" in request.GET:
        return BulkApproveForm(request.GET)
    initial = {k: v for k, v in request.GET.items() if k in ("job", "below", "skipped")}
    form = BulkApproveForm(initial=initial)
    if initial.get("job"):
        # An unknown job in the link is refused here too, before anything is shown.
        probe = QueueFilter({"job": initial["job"]})
        probe.selected_job()
        job, shown = form.fields["job"], probe.fields["job"]
        assert isinstance(job, forms.ChoiceField) and isinstance(shown, forms.ChoiceField)
        job.choices = shown.choices
    return form


@with_csp
def review_bulk_approve(request, *, model_admin):
    require_perm(request, REVIEW_ITEMS)
    form = _bulk_form(request)
    count = None
    job = form.selected_job() if form.is_bound else None  # a 404 for an unknown job
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        items = Item.objects.filter(job=job) if job else Item.objects.all()
        if request.method == "POST":
            approved = reviews.items_bulk_approve(
                items=items, min_score=data["min_score"], user=request.user
            )
            messages.success(request, _("%(n)d result(s) approved.") % {"n": approved})
            return redirect(
                reverse("admin:conversions_item_review") + (f"?job={job.pk}" if job else "")
            )
        count = (
            reviews.review_queue(job=job).filter(validation_score__gte=data["min_score"]).count()
        )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": _("Approve results above a score"),
        "form": form,
        "count": count,
        "media": model_admin.media,
    }
    return TemplateResponse(request, "admin/conversions/item/bulk_approve.html", context)


def review_urls(model_admin) -> list:
    wrap = model_admin.admin_site.admin_view

    def page(request):
        return review_page(request, model_admin=model_admin)

    def bulk(request):
        return review_bulk_approve(request, model_admin=model_admin)

    return [
        path("review/", wrap(page), name="conversions_item_review"),
        path("review/next.json", wrap(review_next), name="conversions_item_review_next"),
        path(
            "review/<int:item_id>/decide/",
            wrap(review_decide),
            name="conversions_item_review_decide",
        ),
        path("review/bulk-approve/", wrap(bulk), name="conversions_item_review_bulk"),
    ]


@admin.register(ReviewEvent)
class ReviewEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "user", "question", "item", "latex_excerpt")
    list_filter = ("action",)
    list_select_related = ("user", "question")
    search_fields = ("=question__question_id",)
    ordering = ("-id",)
    sortable_by = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    raw_id_fields = ("item", "question")

    def get_actions(self, request):
        return {}

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the history is kept

    @admin.display(description=gettext_lazy("LaTeX after"))
    def latex_excerpt(self, event: ReviewEvent) -> str:
        return Truncator(event.latex_after).chars(80)
