"""Questions in the admin: list, search, filters, and import/export (CSV, XLSX, JSON).

Imports are all or nothing with a dry-run preview (see conversions.resources); exports
carry each question's results (what an export holds: conversions.exporting).
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportModelAdmin
from import_export.forms import ConfirmImportForm, ExportForm, ImportForm

from conversions import exporting, labeling
from conversions.admin.formulas import latex_html, mathml_html
from conversions.admin.labels import QUESTION_LABEL_FILTERS
from conversions.admin.launch import LaunchActionsMixin
from conversions.converters import InvalidMathML, parse_mathml
from conversions.importing import SourceError
from conversions.importing.uploads import UploadGone, UploadStorage
from conversions.models import Question
from conversions.resources import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    QuestionResource,
    rejection_message,
)

ALLOW_EMPTY_MATHML_LABEL = _("Allow rows without MathML (text only, e.g. documents to label)")


class QuestionImportForm(ImportForm):
    allow_empty_mathml = forms.BooleanField(label=ALLOW_EMPTY_MATHML_LABEL, required=False)

    def clean_import_file(self):
        # The admin holds an upload in memory for its preview: bigger files are refused
        # before they are read (import_questions streams them).
        upload = self.cleaned_data["import_file"]
        limit = settings.MATHCONV_ADMIN_IMPORT_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                _(
                    "The file has %(size)s bytes; the admin accepts up to %(max)s "
                    "(MATHCONV_ADMIN_IMPORT_MAX_BYTES). Import it with import_questions."
                )
                % {"size": f"{upload.size:,}", "max": f"{limit:,}"}
            )
        return upload


class QuestionConfirmImportForm(ConfirmImportForm):
    allow_empty_mathml = forms.BooleanField(required=False, widget=forms.HiddenInput)


class QuestionForm(forms.ModelForm):
    class Meta:
        model = Question
        fields = (
            "question_id",
            "subject",
            "grade",
            "text",
            "mathml",
            "metadata",
            "latex",
            "conversion_state",
            "latex_locked",
            "labels_corrected",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Text-only documents (imported for labeling) have no MathML.
        if "mathml" in self.fields:
            self.fields["mathml"].required = False

    def clean_labels_corrected(self):
        # A reviewer's labels must fit the schema like the model's (labeling.py).
        labels = self.cleaned_data["labels_corrected"]
        if labels is None:
            return None
        return labeling.labels_checked(question=self.instance, labels=labels)

    def clean_mathml(self):
        mathml = self.cleaned_data["mathml"].strip()
        if mathml:
            try:
                parse_mathml(mathml)
            except InvalidMathML as exc:
                raise forms.ValidationError(str(exc)) from exc
        return mathml


@admin.register(Question)
class QuestionAdmin(LaunchActionsMixin, ImportExportModelAdmin):
    form = QuestionForm
    resource_classes = [QuestionResource]
    import_formats = IMPORT_FORMATS
    export_formats = list(EXPORT_FORMATS)
    import_form_class = QuestionImportForm
    confirm_form_class = QuestionConfirmImportForm
    export_form_class = ExportForm
    import_template_name = "admin/conversions/question/import.html"
    # The launch buttons' list template already extends import-export's list template, so
    # it is the list template itself, and the stock admin list is the base under both
    # (import-export would otherwise make it its own base: a circular extends).
    change_list_template = None
    import_export_change_list_template = LaunchActionsMixin.change_list_template

    # Text and formula first and widest; the lock shows only where there is one (a column
    # of red crosses read as errors). The nav sidebar is off on this page (its template).
    list_display = (
        "question_id",
        "text_excerpt",
        "formula",
        "subject",
        "grade",
        "conversion_state",
        "locked_mark",
        "updated_at",
    )
    list_filter = ("subject", "grade", "conversion_state", "latex_locked", *QUESTION_LABEL_FILTERS)
    search_fields = ("question_id", "text")
    search_help_text = _("Search by question id or question text.")
    show_full_result_count = False
    list_per_page = 50
    readonly_fields = (
        "mathml_drawn",
        "latex_drawn",
        "latex_accepted_by",
        "latex_accepted_at",
        "labels",
        "labels_meta",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "question_id",
                    "subject",
                    "grade",
                    "text",
                    "mathml_drawn",
                    "mathml",
                    "metadata",
                )
            },
        ),
        (
            _("Result"),
            {
                "fields": (
                    "latex_drawn",
                    "latex",
                    "conversion_state",
                    "latex_locked",
                    "latex_accepted_by",
                    "latex_accepted_at",
                )
            },
        ),
        (_("Labels"), {"fields": ("labels", "labels_corrected", "labels_meta")}),
        (_("History"), {"fields": ("created_at", "updated_at")}),
    )

    def get_search_results(self, request, queryset, search_term):
        # An exact question id is found through its unique index; anything else is a
        # substring search over ids and texts (a full scan, fine at 100,000 rows).
        term = search_term.strip()
        if term and queryset.filter(question_id=term).exists():
            return queryset.filter(question_id=term), False
        return super().get_search_results(request, queryset, search_term)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "labels_corrected" in form.changed_data and obj.labels_corrected:
            # Recorded on the labeling item too, with a review event (who and when).
            labeling.labels_correct(question=obj, labels=obj.labels_corrected, user=request.user)
        elif change and "labels_corrected" in form.changed_data:
            labeling.labels_correction_clear(question=obj)  # the model's credit comes back

    class Media:
        js = ["vendor/mathlive/mathlive.min.js"]
        css = {"all": ["conversions/admin.css"]}

    @admin.display(description=_("question text"))
    def text_excerpt(self, obj: Question) -> str:
        return format_html(
            '<span class="mc-question-text">{}</span>', Truncator(obj.text).chars(200)
        )

    @admin.display(description=_("formula"))
    def formula(self, obj: Question):
        """The source MathML drawn (sanitised); a text-only question shows its LaTeX."""
        if obj.mathml:
            return mathml_html(obj.mathml, raw=False)
        return latex_html(obj.latex, raw=False)

    @admin.display(description=_("LaTeX locked"), ordering="latex_locked", empty_value="")
    def locked_mark(self, obj: Question) -> str:
        if not obj.latex_locked:
            return ""
        return format_html(
            '<span class="mc-locked" title="{}">{}</span>', _("LaTeX locked"), _("locked")
        )

    @admin.display(description=_("formula (drawn)"))
    def mathml_drawn(self, obj: Question):
        return mathml_html(obj.mathml)

    @admin.display(description=_("LaTeX (drawn)"))
    def latex_drawn(self, obj: Question):
        return latex_html(obj.latex)

    # --- permissions: importing changes questions, exporting only reads them ------------

    def has_import_permission(self, request) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def has_export_permission(self, request) -> bool:
        return self.has_view_permission(request)

    # --- import ------------------------------------------------------------------------

    def get_import_resource_kwargs(self, request, **kwargs):
        form = kwargs.get("form")
        cleaned = getattr(form, "cleaned_data", None) or {}
        return {"allow_empty_mathml": bool(cleaned.get("allow_empty_mathml"))}

    def get_import_data_kwargs(self, **kwargs):
        # The preview draws each row's formula from its (unsaved) question.
        return {**super().get_import_data_kwargs(**kwargs), "retain_instance_in_row_result": True}

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["allow_empty_mathml"] = import_form.cleaned_data.get("allow_empty_mathml")
        return initial

    def add_data_read_fail_error_to_form(self, form, e):
        if isinstance(e, SourceError):
            where = _("row %(row)s: ") % {"row": e.row} if e.row else ""
            form.add_error("import_file", f"{where}{e}")
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def write_to_tmp_storage(self, import_file, input_format):
        # The library appends chunk after chunk to one bytes object: quadratic in the size.
        storage = self.get_tmp_storage_class()(read_mode=input_format.get_read_mode())
        storage.save(b"".join(import_file.chunks()))
        return storage

    def import_action(self, request, **kwargs):
        response = super().import_action(request, **kwargs)
        # A preview that cannot be confirmed (bad rows, an unreadable file) keeps nothing.
        context = getattr(response, "context_data", None) or {}
        # The library notes the stored name on the uploaded file object itself.
        name = getattr(request.FILES.get("import_file"), "tmp_storage_name", None)
        if name and "confirm_form" not in context:
            UploadStorage(name=name).remove()
        return response

    def process_import(self, request, **kwargs):
        try:
            return super().process_import(request, **kwargs)
        except UploadGone:
            # A second click on Confirm, a stale tab, or an upload older than
            # MATHCONV_UPLOAD_MAX_AGE_SECONDS: the file is gone, nothing is imported again.
            messages.error(
                request,
                _(
                    "This upload was imported already or has expired: nothing was imported "
                    "now. Check the questions, or upload the file again."
                ),
            )
            return HttpResponseRedirect(self._import_url())

    def _import_url(self) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_import")

    def process_result(self, result, request):
        # Reached by the confirm step; a file that fails validation there (posted without
        # the preview, or changed since) is refused as a whole, never partly imported.
        if result.has_validation_errors() or result.has_errors():
            if result.has_validation_errors():
                messages.error(request, rejection_message(result))
            else:
                messages.error(request, _("Nothing was imported: the import failed."))
            return HttpResponseRedirect(self._import_url())
        return super().process_result(result, request)

    # --- export: the same writer as export_questions -----------------------------------

    def get_export_data(self, file_format, request, queryset, **kwargs):
        if not self.has_export_permission(request):
            raise PermissionDenied
        return exporting.export_bytes(queryset, EXPORT_FORMATS[type(file_format)])

    def init_request_context_data(self, request, form):
        context = super().init_request_context_data(request, form)
        context["fields_list"] = [(_("Questions"), exporting.tabular_columns())]
        return context
