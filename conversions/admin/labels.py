"""Label schemas in the admin, and the label filters of the question list.

A schema's fields are edited as JSON and checked before saving (every problem listed at
once); a change of instructions or fields makes a new schema version, so stored labels
keep saying which rules produced them. The JSON schema sent to the model is shown read
only, exactly as the request carries it.
"""

from __future__ import annotations

import json
import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from conversions import labeling
from conversions.admin.access import REVIEW_ITEMS, require_perm, with_csp
from conversions.admin.formulas import latex_html, mathml_html
from conversions.engine.labeling import MAX_TEXT_CHARS, json_schema
from conversions.models import Item, Job, LabelSchema, Question

REVIEW_PAGE = 100


class LabelSchemaForm(forms.ModelForm):
    # The model's column "fields": Django's form metaclass moves this declared field into
    # base_fields, so it never shadows BaseForm.fields (mypy sees a class attribute).
    fields = forms.JSONField(  # type: ignore[assignment]
        label=_("fields"),
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "spellcheck": "false"}),
        help_text=_(
            'A JSON list of fields, each {"name": ..., "type": ..., "description": ...} with '
            'type "choice" (and "choices": [...]), "integer" (and "min", "max"), "keywords" '
            '(and optional "max_items", default 5) or "text".'
        ),
    )

    class Meta:
        model = LabelSchema
        fields = ("name", "instructions", "fields")

    def clean_fields(self):
        fields = self.cleaned_data["fields"]
        labeling.validate_label_fields(fields)
        return fields


@admin.register(LabelSchema)
class LabelSchemaAdmin(admin.ModelAdmin):
    form = LabelSchemaForm
    list_display = ("name", "version", "field_list", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("version", "request_schema", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "instructions", "fields")}),
        (_("Version"), {"fields": ("version", "created_at", "updated_at")}),
        (_("What the model is asked for"), {"fields": ("request_schema",)}),
    )

    @admin.display(description=_("fields"))
    def field_list(self, obj: LabelSchema) -> str:
        return ", ".join(labeling.label_field_names(obj))

    @admin.display(description=_("JSON schema of the request"))
    def request_schema(self, obj: LabelSchema) -> str:
        if not obj.pk or labeling.label_fields_errors(obj.fields):
            return "-"
        text = json.dumps(json_schema(labeling.label_spec(obj)), ensure_ascii=False, indent=2)
        return format_html("<pre>{}</pre>", text)

    def save_model(self, request, obj, form, change):
        labeling.label_schema_save(schema=obj, changed=form.changed_data)

    # --- reviewing labels: the flagged items, then a form built from the schema -------------

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(with_csp(view))

        return [
            path("review/", wrap(self.review_list_view), name="conversions_label_review"),
            path(
                "review/<int:item_id>/",
                wrap(self.review_item_view),
                name="conversions_label_review_item",
            ),
            *super().get_urls(),
        ]

    def review_list_view(self, request):
        require_perm(request, REVIEW_ITEMS)
        include_labeled = request.GET.get("all") == "1"
        queue = labeling.label_review_queue(include_labeled=include_labeled)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Review labels"),
            "items": queue.select_related("question", "job")[:REVIEW_PAGE],
            "count": queue.count(),
            "include_labeled": include_labeled,
        }
        return TemplateResponse(request, "admin/conversions/labels/review_list.html", context)

    def review_item_view(self, request, item_id: int):
        require_perm(request, REVIEW_ITEMS)
        item = get_object_or_404(
            Item.objects.select_related("question", "job__label_schema"),
            pk=item_id,
            job__kind=Job.Kind.LABEL,
        )
        schema = item.job.label_schema
        assert schema is not None  # a labeling job has its schema (job_create)
        initial = item.reviewed_labels or item.result_labels or {}
        form = LabelsForm(request.POST or None, schema_fields=schema.fields, labels=initial)
        if request.method == "POST":
            try:
                if "approve" in request.POST:
                    labeling.labels_approve(item=item, user=request.user)
                    return self._review_next(request, item, gettext("Labels approved."))
                if form.is_valid():
                    labeling.labels_correct(
                        question=item.question, labels=form.labels(), user=request.user, item=item
                    )
                    return self._review_next(request, item, gettext("Corrected labels saved."))
            except ValidationError as exc:
                form.add_error(None, exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Review labels of %(question)s") % {"question": item.question},
            "item": item,
            "schema": schema,
            "form": form,
            "model_labels": json.dumps(item.result_labels, ensure_ascii=False, indent=1)
            if item.result_labels
            else "",
            "model_label_rows": _label_rows(schema.fields, item.result_labels),
            "mathml_drawn": mathml_html(item.question.mathml) if item.question.mathml else "",
            "latex_drawn": latex_html(item.question.latex) if item.question.latex else "",
        }
        return TemplateResponse(request, "admin/conversions/labels/review_item.html", context)

    def _review_next(self, request, item: Item, message: str):
        messages.success(request, message)
        following = labeling.label_review_queue().filter(pk__gt=item.pk).first()
        if following is not None:
            return redirect("admin:conversions_label_review_item", following.pk)
        return redirect(reverse("admin:conversions_label_review"))


KEYWORD_SEPARATORS = re.compile(r"[;,]")


def _label_rows(fields: list[dict], labels) -> list[tuple[str, str]]:
    """The model's labels as (field label, value) rows in the schema's order, lists joined
    with ", "; fields the schema does not know come last under their own names."""
    if not isinstance(labels, dict):
        return []
    rows, seen = [], set()
    for field in fields:
        name = field.get("name")
        if isinstance(name, str) and name in labels:
            seen.add(name)
            rows.append((field.get("title") or name, _label_value(labels[name])))
    rows += [(name, _label_value(v)) for name, v in labels.items() if name not in seen]
    return rows


def _label_value(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if value is None:
        return "–"
    return str(value)


def labels_form_field(field: dict) -> forms.Field:
    options = {
        "label": field.get("title") or field["name"],
        "help_text": field.get("description", ""),
    }
    if field["type"] == "choice":
        choices = [("", "---------"), *((c, c) for c in field["choices"])]
        return forms.ChoiceField(choices=choices, **options)
    if field["type"] == "integer":
        return forms.IntegerField(min_value=field["min"], max_value=field["max"], **options)
    if field["type"] == "keywords":
        options["help_text"] = " ".join(
            [options["help_text"], gettext("Separate keywords with ; or ,")]
        ).strip()
        return forms.CharField(required=False, max_length=2000, **options)
    return forms.CharField(required=False, max_length=MAX_TEXT_CHARS, **options)


class LabelsForm(forms.Form):
    """One input per schema field; the schema check itself is labeling.labels_checked."""

    def __init__(self, data=None, *, schema_fields: list[dict], labels: dict, **kwargs):
        initial = {
            name: labeling.label_value_text(value) if isinstance(value, list) else value
            for name, value in labels.items()
        }
        super().__init__(data, initial=initial, **kwargs)
        self.schema_fields = schema_fields
        for field in schema_fields:
            self.fields[field["name"]] = labels_form_field(field)

    def labels(self) -> dict:
        labels = {}
        for field in self.schema_fields:
            value = self.cleaned_data[field["name"]]
            if field["type"] == "keywords":
                value = [v.strip() for v in KEYWORD_SEPARATORS.split(value) if v.strip()]
            labels[field["name"]] = value
        return labels


# --- filters for the question list ----------------------------------------------------------


class LabelStateFilter(admin.SimpleListFilter):
    title = _("labels")
    parameter_name = "labels"

    def lookups(self, request, model_admin):
        return [
            ("none", _("Not labeled")),
            ("model", _("Labeled by the model")),
            ("corrected", _("Corrected by a reviewer")),
        ]

    def queryset(self, request, queryset: QuerySet[Question]):
        if self.value() == "none":
            return queryset.filter(labels={}, labels_corrected__isnull=True)
        if self.value() == "model":
            return queryset.exclude(labels={}).filter(labels_corrected__isnull=True)
        if self.value() == "corrected":
            return queryset.filter(labels_corrected__isnull=False)
        return queryset


class LabelValueFilter(admin.SimpleListFilter):
    """Questions whose effective label (a correction wins) for one field has one value.

    The choices come from the label schemas: every allowed value of a choice field, every
    number of an integer field. Subclasses name the field.
    """

    field_name = ""

    def field_definitions(self) -> list[dict]:
        return [
            field
            for schema in LabelSchema.objects.order_by("name")
            for field in schema.fields
            if isinstance(field, dict) and field.get("name") == self.field_name
        ]

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        values: dict[str, str] = {}
        for field in self.field_definitions():
            if field.get("type") == "choice":
                values.update((str(c), str(c)) for c in field.get("choices", []))
            elif field.get("type") == "integer":
                low, high = field.get("min", 0), field.get("max", 0)
                values.update((str(n), str(n)) for n in range(low, min(high, low + 20) + 1))
        return list(values.items())

    def queryset(self, request, queryset: QuerySet[Question]):
        raw = self.value()
        if raw is None:
            return queryset
        value: object = raw
        if any(f.get("type") == "integer" for f in self.field_definitions()):
            try:
                value = int(raw)
            except ValueError:
                return queryset.none()
        corrected = Q(**{f"labels_corrected__{self.field_name}": value})
        model = Q(labels_corrected__isnull=True, **{f"labels__{self.field_name}": value})
        return queryset.filter(corrected | model)


class LabelUnitFilter(LabelValueFilter):
    title = _("label: unit")
    parameter_name = "label_unit"
    field_name = "unit"


class LabelDifficultyFilter(LabelValueFilter):
    title = _("label: difficulty")
    parameter_name = "label_difficulty"
    field_name = "difficulty"


class LabelSkillFilter(LabelValueFilter):
    title = _("label: skill type")
    parameter_name = "label_skill_type"
    field_name = "skill_type"


QUESTION_LABEL_FILTERS = (
    LabelStateFilter,
    LabelUnitFilter,
    LabelDifficultyFilter,
    LabelSkillFilter,
)
