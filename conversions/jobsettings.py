"""A job's settings as one frozen object: what the admin launch form, `convert` and `label`
build, and what services.job_create stores on the Job.

The mapping from settings to Job fields is written here once (JobSettings.job_fields);
each way in only says where its values come from.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from django.conf import settings

from conversions.endpoints import endpoint_default
from conversions.engine.labeling import LABEL_PROMPT_VERSION
from conversions.engine.prompts import CONVERT_PROMPT_VERSION
from conversions.models import Endpoint, Job, LabelSchema

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
        )

    def resolved(self) -> JobSettings:
        """These settings with the default model and endpoint filled in (LLM backends;
        a rules job has no endpoint)."""
        if self.backend not in Job.LLM_BACKENDS:
            return replace(self, endpoint=None)
        return replace(
            self,
            model=self.model or default_model(kind=self.kind, backend=self.backend),
            endpoint=self.endpoint or endpoint_default(),
        )

    def item_limit(self) -> int | None:
        """How many questions (by id) the job takes at most; None: all selected."""
        if self.test_mode:
            return min(self.limit or TEST_MODE_ITEMS, TEST_MODE_ITEMS)
        return self.limit

    def job_fields(self) -> dict:
        """The Job model fields these settings set (limit only shapes the item list)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "limit"}
        values["prompt_version"] = prompt_version_for(kind=self.kind, backend=self.backend)
        return values
