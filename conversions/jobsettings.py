"""A job's settings as one frozen object: what the admin launch form, `convert` and `label`
build, and what services.job_create stores on the Job.

The mapping from settings to Job fields is written here once (JobSettings.job_fields);
each way in only says where its values come from.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from django.conf import settings
from django.utils.translation import gettext as _

from conversions.endpoints import endpoint_default
from conversions.engine.labeling import LABEL_PROMPT_VERSION
from conversions.engine.prompts import CONVERT_PROMPT_VERSION
from conversions.fewshot import few_shot_prompt_version, fewshot_for_job
from conversions.models import Endpoint, FewShotSet, Job, LabelSchema
from conversions.preflight import ConfigurationError

TEST_MODE_ITEMS = 50


def default_model(*, kind: str, backend: str) -> str:
    """The model a job uses when none is named: per kind, from the settings; "" for rules."""
    if backend not in Job.LLM_BACKENDS:
        return ""
    if kind == Job.Kind.LABEL:
        return settings.MATHCONV_DEFAULT_LABEL_MODEL
    return settings.MATHCONV_DEFAULT_CONVERT_MODEL


def prompt_version_for(*, kind: str, backend: str) -> str:
    if backend not in Job.LLM_BACKENDS:
        return ""
    return LABEL_PROMPT_VERSION if kind == Job.Kind.LABEL else CONVERT_PROMPT_VERSION


@dataclass(frozen=True)
class JobSettings:
    """How a job runs. model "" means the backend's default (default_model); endpoint
    None means the default endpoint (endpoints.endpoint_default) for LLM backends.

    limit keeps the first N questions (by id), test_mode the first TEST_MODE_ITEMS;
    only_unconverted keeps questions with no accepted result yet (conversion only);
    batch_api sends the requests through the Batch API (conversions/batchapi.py).
    few_shot: a conversion job through an LLM carries the current few-shot set
    (conversions/fewshot.py, frozen now if there is none); off by default, the default
    of the command line and the launch form is settings.MATHCONV_FEW_SHOT.
    """

    backend: str
    kind: str = Job.Kind.CONVERT
    model: str = ""
    batch_size: int = 100
    max_concurrent: int = 10
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    test_mode: bool = False
    only_unconverted: bool = False
    use_cache: bool = True
    overwrite_reviewed: bool = False
    label_schema: LabelSchema | None = None
    name: str = ""
    limit: int | None = None
    endpoint: Endpoint | None = None
    batch_api: bool = False
    few_shot: bool = False
    few_shot_set: FewShotSet | None = None  # set by resolved() when few_shot applies

    @classmethod
    def from_form(cls, *, kind: str, backend: str, data: dict) -> JobSettings:
        """From the admin launch form's cleaned data (ConvertForm or LabelForm)."""
        return cls(
            kind=kind,
            backend=backend,
            model=data.get("model") or "",
            batch_size=data["batch_size"],
            max_concurrent=data["max_concurrent"],
            rpm_limit=data.get("rpm_limit"),
            tpm_limit=data.get("tpm_limit"),
            test_mode=bool(data.get("test_mode")),
            only_unconverted=bool(data.get("only_unconverted")),
            use_cache=bool(data.get("use_cache")),
            overwrite_reviewed=bool(data.get("overwrite_reviewed")),
            label_schema=data.get("label_schema"),
            name=data.get("name") or "",
            endpoint=data.get("endpoint"),
            batch_api=bool(data.get("batch_api")),
            few_shot=bool(data.get("few_shot")),
        )

    def resolved(self) -> JobSettings:
        """These settings with the default model and endpoint filled in (LLM backends;
        a rules job has no endpoint), and the few-shot set a few-shot conversion uses
        (ConfigurationError when no reviewed result qualifies)."""
        if self.backend not in Job.LLM_BACKENDS:
            return replace(self, endpoint=None, few_shot_set=None)
        few_shot_set = None
        if self.few_shot and self.kind == Job.Kind.CONVERT:
            few_shot_set = self.few_shot_set or fewshot_for_job(CONVERT_PROMPT_VERSION)
        return replace(
            self,
            model=self.model or default_model(kind=self.kind, backend=self.backend),
            endpoint=self.endpoint or endpoint_default(),
            few_shot_set=few_shot_set,
        )

    def item_limit(self) -> int | None:
        """How many questions (by id) the job takes at most; None: all selected."""
        if self.test_mode:
            return min(self.limit or TEST_MODE_ITEMS, TEST_MODE_ITEMS)
        return self.limit

    def job_fields(self) -> dict:
        """The Job model fields these settings set (limit only shapes the item list)."""
        skip = ("limit", "few_shot")
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        values["prompt_version"] = prompt_version_for(kind=self.kind, backend=self.backend)
        if self.few_shot_set is not None:
            values["prompt_version"] = few_shot_prompt_version(self.few_shot_set)
        return values

    def to_mapping(self) -> dict:
        """These settings as JSON-ready data (a RecurringJob keeps them so): every field
        by name, the endpoint and the label schema by primary key (None: the default)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["endpoint"] = self.endpoint.pk if self.endpoint else None
        values["label_schema"] = self.label_schema.pk if self.label_schema else None
        return values

    @classmethod
    def from_mapping(cls, mapping: dict) -> JobSettings:
        """The settings to_mapping() wrote. A field missing from the mapping (saved before
        the field existed) takes its default. Raises ConfigurationError for a key this
        version does not know (a setting it cannot honour, never silently dropped) and
        for an endpoint or label schema that no longer exists."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ConfigurationError(
                _("Unknown job settings: %(names)s.") % {"names": ", ".join(unknown)}
            )
        values = dict(mapping)
        if values.get("endpoint") is not None:
            values["endpoint"] = Endpoint.objects.filter(pk=values["endpoint"]).first()
            if values["endpoint"] is None:
                raise ConfigurationError(
                    _("The endpoint %(id)s of these settings no longer exists.")
                    % {"id": mapping["endpoint"]}
                )
        if values.get("label_schema") is not None:
            values["label_schema"] = LabelSchema.objects.filter(pk=values["label_schema"]).first()
            if values["label_schema"] is None:
                raise ConfigurationError(
                    _("The label schema %(id)s of these settings no longer exists.")
                    % {"id": mapping["label_schema"]}
                )
        return cls(**values)
