"""Items in the admin: the item list, failures grouped by message, retries, item pages.

The item table is the big one (a million rows): the list never counts past a cap,
renders its checkboxes without a template per row, and searches by question through
the question's unique index.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.db.models import Count
from django.http import Http404, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from conversions import selectors, services
from conversions.admin import review
from conversions.admin.access import (
    REVIEW_ITEMS,
    RUN_JOBS,
    VIEW_ITEMS,
    require_perm,
    with_csp,
)
from conversions.admin.formulas import latex_html, mathml_html
from conversions.admin.jobs import CssMedia, failures_url
from conversions.admin.lists import CappedCountPaginator, FastActionCheckbox
from conversions.engine.redact import redact
from conversions.models import Endpoint, Item, Job, ModelPrice, Question

SAMPLE_CHARS = 300
MAX_TICKED = 10_000
LLM_RETRY_BACKENDS = (Job.Backend.HYBRID, Job.Backend.OPENAI)


class RetryWithLLMForm(forms.Form):
    """Where "retry with the LLM" sends a rules job's failures: backend, endpoint, model."""

    backend = forms.ChoiceField(
        label=gettext_lazy("backend"),
        choices=[(b, Job.Backend(b).label) for b in LLM_RETRY_BACKENDS],
        initial=Job.Backend.HYBRID,
        help_text=gettext_lazy(
            "Hybrid sends only what the rules cannot convert to the LLM; the "
            "OpenAI-compatible API sends every item."
        ),
    )
    endpoint = forms.ModelChoiceField(
        label=gettext_lazy("endpoint"),
        queryset=Endpoint.objects.all(),
        required=False,
        empty_label=gettext_lazy("default (OPENAI_BASE_URL / OPENAI_API_KEY)"),
    )
    model = forms.CharField(
        label=gettext_lazy("model"),
        max_length=100,
        required=False,
        help_text=gettext_lazy("Empty: the default model of the backend."),
        widget=forms.TextInput(attrs={"list": "mc-models"}),
    )


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


@admin.register(Item)
class ItemAdmin(FastActionCheckbox, admin.ModelAdmin):
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
    actions = ["retry_selected", "retry_with_llm"]
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
                    "reasons_shown",
                )
            },
        ),
        (
            gettext_lazy("Failure"),
            {"fields": ("error_category", "error_shown", "request_shown", "response_shown")},
        ),
        (
            gettext_lazy("Cost"),
            {
                "fields": (
                    "latency_ms",
                    "tokens_in",
                    "tokens_cached",
                    "tokens_out",
                    "cost_usd",
                    "prompt_cache_saved_usd",
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
    readonly_fields = tuple(flatten_fieldsets(fieldsets))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # results change through retries and reviews, not the form

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # an item is its question's history within the job

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm(RUN_JOBS)

    # Reasons are stored language-neutrally and shown in the request's language
    # (converters/messages.py, issue 12).
    @admin.display(description=gettext_lazy("message"))
    def message_excerpt(self, item: Item) -> str:
        return Truncator(item.error_text).chars(80)

    @admin.display(description=gettext_lazy("error message"))
    def error_shown(self, item: Item) -> str:
        return item.error_text

    @admin.display(description=gettext_lazy("validation reasons"))
    def reasons_shown(self, item: Item):
        reasons = item.reasons_text
        if not reasons:
            return "–"
        rows = format_html_join("", "<li>{}</li>", ((reason,) for reason in reasons))
        return format_html("<ul class='mc-samples'>{}</ul>", rows)

    @admin.display(description=gettext_lazy("source (rendered)"))
    def source_mathml(self, item: Item):
        # The MathML source itself is on the question's page (linked above).
        return mathml_html(item.question.mathml, raw=False)

    @admin.display(description=gettext_lazy("LaTeX (rendered)"))
    def latex_preview(self, item: Item):
        # The raw LaTeX is the result_latex / reviewed_latex fields beside it.
        return latex_html(item.reviewed_latex or item.result_latex, raw=False)

    @admin.display(description=gettext_lazy("request excerpt"))
    def request_shown(self, item: Item):
        return format_html('<pre class="mc-excerpt">{}</pre>', redact(item.request_excerpt))

    @admin.display(description=gettext_lazy("response excerpt"))
    def response_shown(self, item: Item):
        return format_html('<pre class="mc-excerpt">{}</pre>', redact(item.response_excerpt))

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

    @admin.action(
        description=gettext_lazy("Retry selected failed items with the LLM…"), permissions=["run"]
    )
    def retry_with_llm(self, request, queryset):
        require_perm(request, RUN_JOBS)
        failed = queryset.filter(status=Item.Status.FAILED, job__kind=Job.Kind.CONVERT)
        ids = list(failed.order_by("pk").values_list("pk", flat=True)[: MAX_TICKED + 1])
        if not ids:
            self.message_user(
                request,
                _("None of the selected items is a failed item of a conversion job."),
                messages.WARNING,
            )
            return None
        per_job = dict(
            Item.objects.filter(pk__in=ids[:MAX_TICKED])
            .order_by()
            .values_list("job_id")
            .annotate(n=Count("pk"))
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Retry with the LLM"),
            "ids": ids[:MAX_TICKED],
            "capped": len(ids) > MAX_TICKED,
            "max_ticked": MAX_TICKED,
            "jobs": [
                {"job": job, "n": per_job[job.pk]}
                for job in Job.objects.filter(pk__in=per_job).order_by("pk")
            ],
            "form": RetryWithLLMForm(),
            "models": ModelPrice.objects.values_list("model", flat=True),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/conversions/item/retry_llm.html", context)

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
                "failures/retry-llm/",
                wrap(self.retry_llm_view),
                name="conversions_item_retry_llm",
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
            "can_retry": item is not None and request.user.has_perm(RUN_JOBS) and item.can_retry,
            "can_review": item is not None
            and request.user.has_perm(REVIEW_ITEMS)
            and item.can_review,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("job", "question")

    def get_search_results(self, request, queryset, search_term):
        # The question first (unique index), then its items (index on question_id):
        # searching through the join makes SQLite walk all items in id order.
        term = search_term.strip()
        if not term:
            return queryset, False
        questions = list(Question.objects.filter(question_id=term).values_list("pk", flat=True))
        return queryset.filter(question_id__in=questions), False

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
        groups = selectors.failure_groups(
            failed.filter(error_category=category) if category else failed
        )
        for group in groups:
            group["url"] = failures_url(
                job=job and job.pk,
                error_category__exact=group["category"],
                error_message__startswith=group["prefix"],
            )
            group["scope"] = urlencode(
                {
                    "error_category__exact": group["category"],
                    "error_message__startswith": group["prefix"],
                }
            )
        can_run = request.user.has_perm(RUN_JOBS)
        # Retry with the LLM: a conversion job's failed items (the rules refuse the same
        # item again), in a new job on hybrid or openai.
        llm_failed = 0
        if can_run and job is not None and job.kind == Job.Kind.CONVERT:
            scoped = failed.filter(error_category=category) if category else failed
            llm_failed = scoped.filter(status=Item.Status.FAILED).count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Failures"),
            "job": job,
            "category": category,
            "categories": categories,
            "groups": groups,
            "total": sum(by_category.values()),
            "can_run": can_run,
            "llm_failed": llm_failed,
            "llm_form": RetryWithLLMForm() if llm_failed else None,
            "models": ModelPrice.objects.values_list("model", flat=True),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/conversions/item/failures.html", context)

    def retry_category_view(self, request):
        return _retry_category(request)

    def retry_item_view(self, request, object_id):
        return _retry_item(request, object_id)

    def retry_llm_view(self, request):
        return _retry_with_llm(request)


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


def _llm_retry_scope(post: QueryDict, job: Job | None):
    """The items a retry with the LLM was asked for: ticked ids (the item list's action),
    else a job's failures, narrowed to a category or to one group of the failures page
    (its category and message start, as the group's "show items" link). None: no scope,
    or an unknown category."""
    ids = [int(v) for v in post.getlist("ids") if v.isdigit()][:MAX_TICKED]
    if ids:
        return Item.objects.filter(pk__in=ids)
    if job is None:
        return None
    items = Item.objects.filter(job_id=job.pk)
    group = QueryDict(post.get("group", ""))
    category = group.get("error_category__exact") or post.get("category", "")
    if category:
        if category not in Item.ErrorCategory.values:
            return None
        items = items.filter(error_category=category)
    if prefix := group.get("error_message__startswith"):
        items = items.filter(error_message__startswith=prefix)
    return items


@require_POST
def _retry_with_llm(request):
    """A new job per source job, on the chosen backend, endpoint and model, over the
    failed items in scope; to the new job's page (several: the job list)."""
    require_perm(request, RUN_JOBS)
    job = _job_param(request.POST.get("job"))
    back = reverse("admin:conversions_item_failures") + (f"?job={job.pk}" if job else "")
    form = RetryWithLLMForm(request.POST)
    items = _llm_retry_scope(request.POST, job)
    if items is None or not form.is_valid():
        errors = [] if items is not None else [_("Choose the failed items to retry.")]
        errors += [str(e) for field in form.errors.values() for e in field]
        messages.error(request, " ".join(errors))
        return redirect(back)
    failed = items.filter(status=Item.Status.FAILED, job__kind=Job.Kind.CONVERT)
    sources = list(Job.objects.filter(pk__in=failed.values("job_id")).order_by("pk"))
    if not sources:
        messages.warning(request, _("There are no failed items of a conversion job to retry."))
        return redirect(back)
    created = []
    for source in sources:
        try:
            new = services.job_retry_with(
                job=source,
                backend=form.cleaned_data["backend"],
                model=form.cleaned_data["model"],
                endpoint=form.cleaned_data["endpoint"],
                items=failed,
                created_by=request.user,
            )
        except services.ConfigurationError as exc:
            messages.error(request, str(exc))
            break  # the same settings would fail the next job the same way
        created.append(new)
        messages.success(
            request,
            _("Job %(new)s (%(name)s) retries %(n)s failed item(s) of job %(job)s.")
            % {"new": new.pk, "name": new.name, "n": new.total_items, "job": source.pk},
        )
    if len(created) == 1:
        return redirect("admin:conversions_job_change", created[0].pk)
    if created:
        return redirect("admin:conversions_job_changelist")
    return redirect(back)
