"""Launching conversion and labeling jobs from the question list.

Two ways in, one confirmation page: the list actions (for ticked rows, or with "select
all" for every row matching the filter), and the "Convert/Label all matching" buttons,
which need no ticking at all. A selection of the whole filter is kept as the
changelist's query parameters (Job.selection = {"filter": {...}}) and turned back into
a queryset on the server, through the same ChangeList the list page uses, so the job
gets exactly the rows the operator saw, whether that is 5 or 50,000.
"""

from __future__ import annotations

import copy

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.http import Http404, QueryDict
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions import labeling, selectors, services
from conversions.admin.access import RUN_JOBS, require_perm, with_csp
from conversions.endpoints import endpoint_from_environment
from conversions.jobsettings import TEST_MODE_ITEMS, JobSettings, default_model
from conversions.models import Endpoint, Job, LabelSchema, ModelPrice, QuestionQuerySet

NOT_FILTERS = {"p", "o", "all", "e", "_facets", "_popup", "_to_field", "_changelist_filters"}
MAX_TICKED = 10_000
KINDS = (Job.Kind.CONVERT, Job.Kind.LABEL)


class JobSettingsForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("name"), max_length=200, required=False)
    model = forms.CharField(
        label=gettext_lazy("model"),
        max_length=100,
        required=False,
        help_text=gettext_lazy("Empty: the default model of the backend."),
        widget=forms.TextInput(attrs={"list": "mc-models"}),
    )
    endpoint = forms.ModelChoiceField(
        label=gettext_lazy("endpoint"),
        queryset=Endpoint.objects.all(),
        required=False,
        empty_label=gettext_lazy("default (OPENAI_BASE_URL / OPENAI_API_KEY)"),
        help_text=gettext_lazy(
            "The server the job runs on. Its key is read from the workers' environment."
        ),
    )
    batch_size = forms.IntegerField(
        label=gettext_lazy("batch size"), min_value=1, max_value=10_000, initial=100
    )
    max_concurrent = forms.IntegerField(
        label=gettext_lazy("max concurrent requests"), min_value=1, max_value=500, initial=10
    )
    rpm_limit = forms.IntegerField(
        label=gettext_lazy("requests per minute"), min_value=1, required=False
    )
    tpm_limit = forms.IntegerField(
        label=gettext_lazy("tokens per minute"), min_value=1, required=False
    )
    test_mode = forms.BooleanField(
        label=gettext_lazy("test mode (first 50)"), required=False, initial=False
    )
    use_cache = forms.BooleanField(
        label=gettext_lazy("use result cache"), required=False, initial=True
    )
    batch_api = forms.BooleanField(
        label=gettext_lazy("Batch API mode"),
        required=False,
        initial=False,
        help_text=gettext_lazy(
            "Send the requests as Batch API files instead of one call each: half the "
            "price, results within 24 hours. Needs an endpoint with the Batch API."
        ),
    )


class ConvertForm(JobSettingsForm):
    backend = forms.ChoiceField(
        label=gettext_lazy("backend"), choices=Job.Backend.choices, initial=Job.Backend.RULES
    )
    only_unconverted = forms.BooleanField(
        label=gettext_lazy("only unconverted"),
        required=False,
        initial=True,
        help_text=gettext_lazy(
            "Skip questions that already have an accepted result. On by default, as in "
            "the convert command (convert --all converts every question)."
        ),
    )
    overwrite_reviewed = forms.BooleanField(
        label=gettext_lazy("overwrite reviewed results"),
        required=False,
        initial=False,
        help_text=gettext_lazy("Replace LaTeX that a reviewer approved or edited."),
    )
    few_shot = forms.BooleanField(
        label=gettext_lazy("few-shot examples from reviewed results"),
        required=False,
        initial=lambda: settings.MATHCONV_FEW_SHOT,
        help_text=gettext_lazy(
            "LLM backends: the prompt carries a fixed set of results your reviewers "
            "approved or fixed, as worked examples (the same set for every job until it is "
            "refreshed with `manage.py fewshot refresh`)."
        ),
    )
    field_order = ["name", "backend", "model"]


class LabelForm(JobSettingsForm):
    label_schema = forms.ModelChoiceField(
        label=gettext_lazy("label schema"), queryset=LabelSchema.objects.all(), empty_label=None
    )
    only_unlabeled = forms.BooleanField(
        label=gettext_lazy("only unlabeled"),
        required=False,
        initial=True,
        help_text=gettext_lazy("Skip questions that already have labels from this schema."),
    )
    overwrite_reviewed = forms.BooleanField(
        label=gettext_lazy("overwrite reviewed labels"), required=False, initial=False
    )
    field_order = ["name", "label_schema", "model"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The schema the select shows first is the one the first estimate prices: without
        # it the page opened with "tokens 0 / no price" until "Update estimate".
        field = self.fields["label_schema"]
        if not self.is_bound and field.initial is None:
            field.initial = field.queryset.first()

    @property
    def backend(self) -> str:
        return Job.Backend.OPENAI  # labeling always asks a model


FORMS: dict[str, type[JobSettingsForm]] = {Job.Kind.CONVERT: ConvertForm, Job.Kind.LABEL: LabelForm}


# --- selection ---------------------------------------------------------------------------


def filter_params(query: QueryDict) -> dict[str, list[str]]:
    """The changelist's filter and search parameters, without paging and ordering."""
    return {key: values for key, values in query.lists() if key not in NOT_FILTERS}


def filtered_questions(request, model_admin, params: dict[str, list[str]]) -> QuestionQuerySet:
    """The questions the list page shows for these parameters (filters and search)."""
    query = QueryDict(mutable=True)
    for key, values in params.items():
        query.setlist(key, [str(v) for v in values])
    list_request = copy.copy(request)
    list_request.GET = query
    changelist = model_admin.get_changelist_instance(list_request)
    return changelist.get_queryset(list_request)


def selected_questions(request, model_admin, selection: dict) -> QuestionQuerySet:
    if "ids" in selection:
        return model_admin.get_queryset(request).filter(pk__in=selection["ids"])
    return filtered_questions(request, model_admin, selection.get("filter", {}))


def describe_selection(selection: dict) -> str:
    if "ids" in selection:
        return _("%(n)d ticked question(s)") % {"n": len(selection["ids"])}
    params = selection.get("filter") or {}
    if not params:
        return _("all questions")
    shown = ", ".join(f"{key}={'|'.join(values)}" for key, values in sorted(params.items()))
    return _("all questions matching %(filter)s") % {"filter": shown}


def runnable_questions(questions: QuestionQuerySet, *, kind: str, data: dict) -> QuestionQuerySet:
    """The part of the selection a job with these settings will work on (the rules
    job_create applies, used here to count and estimate)."""
    if kind == Job.Kind.CONVERT:
        questions = questions.with_mathml()
    if kind == Job.Kind.CONVERT and data.get("only_unconverted"):
        # The same rule job_create applies; used here to count and estimate.
        questions = questions.unconverted()
    if kind == Job.Kind.LABEL and data.get("only_unlabeled") and data.get("label_schema"):
        questions = labeling.questions_unlabeled(questions, schema=data["label_schema"])
    return questions


# --- estimate ----------------------------------------------------------------------------


# --- the confirmation page ----------------------------------------------------------------


def launch_response(request, model_admin, *, kind: str, selection: dict, form=None):
    form = form or FORMS[kind]()
    try:
        questions = selected_questions(request, model_admin, selection)
    except IncorrectLookupParameters:
        messages.error(request, _("The filter of the question list is not valid."))
        return redirect("admin:conversions_question_changelist")
    selected = questions.count()
    data = form.cleaned_data if form.is_bound and form.is_valid() else _initial(form)
    runnable = runnable_questions(questions, kind=kind, data=data)
    count = runnable.count()
    if data.get("test_mode"):
        count = min(count, TEST_MODE_ITEMS)
    backend = form.backend if kind == Job.Kind.LABEL else data.get("backend", Job.Backend.RULES)
    model = data.get("model") or default_model(kind=kind, backend=backend)
    estimate = selectors.launch_estimate(
        runnable,
        kind=kind,
        backend=backend,
        model=model,
        schema=data.get("label_schema"),
        count=count,
        batch_api=bool(data.get("batch_api")),
        endpoint=data.get("endpoint") or endpoint_from_environment(),
    )
    filter_query = urlencode(selection.get("filter", {}), doseq=True)
    action = reverse("admin:conversions_question_launch", args=[kind])
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": _("Start a conversion job")
        if kind == Job.Kind.CONVERT
        else _("Start a labeling job"),
        "kind": kind,
        "form": form,
        "selection": selection,
        "selection_text": describe_selection(selection),
        "ids": selection.get("ids", []),
        "selected": selected,
        "text_only": questions.filter(mathml="").count() if kind == Job.Kind.CONVERT else 0,
        "estimate": estimate,
        "form_action": action + (f"?{filter_query}" if filter_query else ""),
        "back_url": reverse("admin:conversions_question_changelist")
        + (f"?{filter_query}" if filter_query else ""),
        "models": ModelPrice.objects.values_list("model", flat=True),
        "media": model_admin.media + form.media,
    }
    return TemplateResponse(request, "admin/conversions/launch.html", context)


def _initial(form) -> dict:
    return {name: form.get_initial_for_field(field, name) for name, field in form.fields.items()}


def launch_view(request, *, model_admin, kind: str):
    require_perm(request, RUN_JOBS, "conversions.view_question")
    if kind not in KINDS:
        raise Http404
    if request.method != "POST":
        return launch_response(
            request, model_admin, kind=kind, selection={"filter": filter_params(request.GET)}
        )
    ids = [int(v) for v in request.POST.getlist("ids") if v.isdigit()][:MAX_TICKED]
    selection = {"ids": ids} if ids else {"filter": filter_params(request.GET)}
    form = FORMS[kind](request.POST)
    if "_launch" not in request.POST or not form.is_valid():
        return launch_response(request, model_admin, kind=kind, selection=selection, form=form)
    return _launch(request, model_admin, kind=kind, selection=selection, form=form)


def _launch(request, model_admin, *, kind, selection, form):
    data = form.cleaned_data
    questions = runnable_questions(
        selected_questions(request, model_admin, selection), kind=kind, data=data
    )
    backend = form.backend if kind == Job.Kind.LABEL else data["backend"]
    try:
        job = services.job_create(
            job_settings=JobSettings.from_form(kind=kind, backend=backend, data=data),
            questions=questions,
            selection=selection,
            created_by=request.user,
        )
    except services.ConfigurationError as exc:
        form.add_error(None, str(exc))
        return launch_response(request, model_admin, kind=kind, selection=selection, form=form)
    messages.success(
        request, _("Job %(job)s started with %(n)d item(s).") % {"job": job, "n": job.total_items}
    )
    return redirect("admin:conversions_job_change", job.pk)


# --- the admin side: actions, buttons, URLs -----------------------------------------------


def _action_selection(request) -> dict:
    if request.POST.get("select_across") == "1":
        return {"filter": filter_params(request.GET)}
    ids = request.POST.getlist(ACTION_CHECKBOX_NAME)
    return {"ids": [int(v) for v in ids if v.isdigit()][:MAX_TICKED]}


class LaunchActionsMixin:
    """Adds the convert and label actions, buttons and pages to the question admin."""

    change_list_template: str | None = "admin/conversions/question/change_list.html"
    launch_actions = ("convert_questions", "label_questions")

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm(RUN_JOBS)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.has_run_permission(request):
            for name in self.launch_actions:
                actions[name] = self.get_action(name)
        return actions

    @admin.action(description=gettext_lazy("Convert selected questions…"))
    def convert_questions(self, request, queryset):
        require_perm(request, RUN_JOBS)
        return launch_response(
            request, self, kind=Job.Kind.CONVERT, selection=_action_selection(request)
        )

    @admin.action(description=gettext_lazy("Label selected questions…"))
    def label_questions(self, request, queryset):
        require_perm(request, RUN_JOBS)
        return launch_response(
            request, self, kind=Job.Kind.LABEL, selection=_action_selection(request)
        )

    def get_urls(self):
        def launch(request, kind):
            return with_csp(launch_view)(request, model_admin=self, kind=kind)

        return [
            path(
                "launch/<str:kind>/",
                self.admin_site.admin_view(launch),
                name="conversions_question_launch",
            ),
            *super().get_urls(),
        ]
