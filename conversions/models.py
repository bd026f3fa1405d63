from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from conversions.converters.messages import render, shown
from conversions.engine.types import ErrorCategory

ERROR_CATEGORY_LABELS = {
    ErrorCategory.RATE_LIMIT: _("Rate limit"),
    ErrorCategory.TIMEOUT: _("Timeout"),
    ErrorCategory.API_ERROR: _("API error"),
    ErrorCategory.INVALID_INPUT: _("Invalid input"),
    ErrorCategory.INVALID_OUTPUT: _("Invalid output"),
    ErrorCategory.VALIDATION_FAILED: _("Validation failed"),
    ErrorCategory.CANCELLED: _("Cancelled"),
}


class QuestionQuerySet(models.QuerySet["Question"]):
    def with_mathml(self) -> QuestionQuerySet:
        """Questions that have a formula to convert: a label import can create questions
        with text only (mathml ""), which a conversion job leaves out."""
        return self.exclude(mathml="")

    def unconverted(self) -> QuestionQuerySet:
        """Questions with no accepted result yet: never converted, or failed."""
        return self.filter(
            conversion_state__in=[
                Question.ConversionState.UNCONVERTED,
                Question.ConversionState.FAILED,
            ]
        )

    def results(self, *, all_successful: bool = False) -> QuestionQuerySet:
        """Questions whose LaTeX is a result to hand on (export_results): approved by a
        reviewer; with all_successful also those a job converted and validated (state
        converted). Needs-review and failed questions never are."""
        states = [Question.ConversionState.APPROVED]
        if all_successful:
            states.append(Question.ConversionState.CONVERTED)
        return self.filter(conversion_state__in=states).exclude(latex="")


class Question(models.Model):
    class ConversionState(models.TextChoices):
        UNCONVERTED = "unconverted", _("Not converted")
        CONVERTED = "converted", _("Converted")
        NEEDS_REVIEW = "needs_review", _("Needs review")
        APPROVED = "approved", _("Approved")
        FAILED = "failed", _("Failed")

    question_id = models.CharField(_("question id"), max_length=100, unique=True)
    mathml = models.TextField(_("MathML"))
    text = models.TextField(_("question text"), blank=True)
    subject = models.CharField(_("subject"), max_length=50, blank=True, db_index=True)
    grade = models.CharField(_("grade"), max_length=30, blank=True, db_index=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)

    # The accepted LaTeX: written by a job when a result passes validation, or by a
    # reviewer. latex_locked marks an approved or hand-edited result that later jobs
    # must not overwrite unless the operator asks for it (DESIGN invariant 8).
    latex = models.TextField(_("LaTeX"), blank=True)
    conversion_state = models.CharField(
        _("conversion state"),
        max_length=20,
        choices=ConversionState.choices,
        default=ConversionState.UNCONVERTED,
    )
    latex_locked = models.BooleanField(_("LaTeX locked by review"), default=False)
    latex_accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("accepted by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    latex_accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)
    # A stem (HTML or text with formulas, converters.is_document(mathml)) is converted
    # formula by formula: `latex` then holds the whole converted stem and `formulas` one
    # entry per formula, in order (conversions/stems.py: mathml, display, latex, error,
    # score, reasons). None for a bare formula.
    formulas = models.JSONField(_("formulas"), null=True, blank=True)
    # The value the source's own LaTeX column held when it was last read (an import with a
    # `source_latex` column) or written (export_results --to-db); "": empty there, or never
    # known. export_results --to-db leaves a row alone whose value there is no longer this
    # one (changed there since), unless forced (conversions/writeback.py).
    source_latex = models.TextField(_("LaTeX in the source"), blank=True)

    # Model output and reviewer corrections are kept apart: `labels` is what the last
    # labeling job produced, `labels_corrected` what a reviewer set (wins when present).
    labels = models.JSONField(_("labels"), default=dict, blank=True)
    labels_corrected = models.JSONField(_("corrected labels"), null=True, blank=True)
    labels_meta = models.JSONField(_("label provenance"), default=dict, blank=True)

    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = QuestionQuerySet.as_manager()

    class Meta:
        verbose_name = _("question")
        verbose_name_plural = _("questions")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["conversion_state", "id"], name="question_state_idx"),
            models.Index(fields=["subject", "grade"], name="question_subject_grade_idx"),
        ]

    def __str__(self) -> str:
        return self.question_id

    def locked_for(self, job: Job) -> bool:
        """Whether this question's LaTeX is locked by a reviewer against this job's results.

        A reviewer's approved or edited LaTeX stays unless the job was started to
        overwrite reviewed results (DESIGN invariant 8). Labeling never touches LaTeX.
        """
        return job.kind == Job.Kind.CONVERT and self.latex_locked and not job.overwrite_reviewed

    @property
    def effective_labels(self) -> dict:
        return self.labels_corrected if self.labels_corrected is not None else self.labels


class LabelSchema(models.Model):
    """A labeling scheme: instructions plus fields with allowed values or ranges.

    fields is a list of {"name", "type": "choice"|"integer"|"keywords"|"text",
    "choices": [...], "min", "max", "max_items", "description"}; it becomes the strict
    JSON schema of the structured-output request.
    """

    name = models.SlugField(_("name"), max_length=64, unique=True)
    instructions = models.TextField(_("instructions"))
    fields = models.JSONField(_("fields"), default=list)
    version = models.PositiveIntegerField(_("version"), default=1)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("label schema")
        verbose_name_plural = _("label schemas")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Endpoint(models.Model):
    """An OpenAI-compatible server a job runs on (DESIGN invariant 10).

    The key stays in the environment: key_env names the variable that holds it, read by
    the process that does the work (conversions/endpoints.py). Blank key_env: the server
    needs no key (a local vLLM or Ollama).
    """

    class Kind(models.TextChoices):
        OPENAI = "openai", _("OpenAI")
        AZURE = "azure", _("Azure OpenAI")
        COMPATIBLE = "compatible", _("OpenAI-compatible server")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.CharField(
        _("base URL"), max_length=500, blank=True, help_text=_("Blank: https://api.openai.com/v1")
    )
    key_env = models.CharField(
        _("environment variable of the API key"),
        max_length=100,
        blank=True,
        help_text=_("The name of the variable, never the key. Blank: the server needs no key."),
    )
    api_version = models.CharField(_("Azure api-version"), max_length=40, blank=True)
    rpm_limit = models.PositiveIntegerField(_("requests per minute"), null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(_("tokens per minute"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("endpoint")
        verbose_name_plural = _("endpoints")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        return self.base_url or "https://api.openai.com/v1"


class EndpointModel(models.Model):
    """A model on an endpoint: which parameters it accepts and what it costs.

    Prices are USD per million tokens; blank prices fall back to ModelPrice.
    """

    class MaxTokensParam(models.TextChoices):
        MAX_COMPLETION_TOKENS = "max_completion_tokens", "max_completion_tokens"
        MAX_TOKENS = "max_tokens", "max_tokens"
        NONE = "none", _("none (do not send a limit)")

    endpoint = models.ForeignKey(
        Endpoint, verbose_name=_("endpoint"), on_delete=models.CASCADE, related_name="models"
    )
    model = models.CharField(_("model"), max_length=100)
    accepts_temperature = models.BooleanField(_("accepts temperature"), default=True)
    structured_outputs = models.BooleanField(_("structured outputs"), default=True)
    max_tokens_param = models.CharField(
        _("max-tokens parameter"),
        max_length=24,
        choices=MaxTokensParam.choices,
        default=MaxTokensParam.MAX_COMPLETION_TOKENS,
    )
    # OpenAI's prompt_cache_key routes requests with one stable prefix to one cache.
    # None: by the endpoint's kind (OpenAI and Azure OpenAI yes, other servers no).
    prompt_cache_key = models.BooleanField(
        _("accepts prompt_cache_key"),
        null=True,
        blank=True,
        help_text=_("Unknown: sent to OpenAI and Azure OpenAI endpoints only."),
    )
    input_per_mtok = models.DecimalField(
        _("input $/1M tokens"), max_digits=10, decimal_places=4, null=True, blank=True
    )
    cached_input_per_mtok = models.DecimalField(
        _("cached input $/1M tokens"), max_digits=10, decimal_places=4, null=True, blank=True
    )
    output_per_mtok = models.DecimalField(
        _("output $/1M tokens"), max_digits=10, decimal_places=4, null=True, blank=True
    )
    batch_input_per_mtok = models.DecimalField(
        _("Batch API input $/1M tokens"), max_digits=10, decimal_places=4, null=True, blank=True
    )
    batch_output_per_mtok = models.DecimalField(
        _("Batch API output $/1M tokens"), max_digits=10, decimal_places=4, null=True, blank=True
    )
    # Azure OpenAI runs Batch API requests on a deployment of its own (type Global-Batch);
    # blank: the requests name the job's model (OpenAI and compatible servers).
    batch_deployment = models.CharField(
        _("Batch API deployment"),
        max_length=100,
        blank=True,
        help_text=_("Azure: the Global-Batch deployment that Batch API requests name."),
    )

    class Meta:
        verbose_name = _("endpoint model")
        verbose_name_plural = _("endpoint models")
        ordering = ["endpoint", "model"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "model"], name="endpoint_model_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.model}"


class Job(models.Model):
    class Kind(models.TextChoices):
        CONVERT = "convert", _("Conversion")
        LABEL = "label", _("Labeling")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        COMPLETED_WITH_ERRORS = "completed_with_errors", _("Completed with errors")
        CANCELLED = "cancelled", _("Cancelled")
        FAILED = "failed", _("Failed")

    class Backend(models.TextChoices):
        RULES = "rules", _("Rules (deterministic converter)")
        OPENAI = "openai", _("OpenAI-compatible API")
        HYBRID = "hybrid", _("Hybrid (rules first, LLM for the rest)")

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    LLM_BACKENDS = (Backend.OPENAI, Backend.HYBRID)
    FINAL_STATUSES = (
        Status.COMPLETED,
        Status.COMPLETED_WITH_ERRORS,
        Status.CANCELLED,
        Status.FAILED,
    )

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.CONVERT)
    name = models.CharField(_("name"), max_length=200, blank=True)
    status = models.CharField(
        _("status"), max_length=24, choices=Status.choices, default=Status.QUEUED
    )
    backend = models.CharField(
        _("backend"), max_length=10, choices=Backend.choices, default=Backend.RULES
    )
    model = models.CharField(_("model"), max_length=100, blank=True)
    # The server the job runs on, whatever the environment of the worker (DESIGN inv. 10);
    # null for rules jobs.
    endpoint = models.ForeignKey(
        Endpoint,
        verbose_name=_("endpoint"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )
    prompt_version = models.CharField(_("prompt version"), max_length=20, blank=True)
    # Conversion jobs may carry reviewed results as worked examples: the set frozen when
    # the job was created (conversions/fewshot.py), so every request of the job, and of
    # later jobs until the set is refreshed, starts with the same bytes.
    few_shot_set = models.ForeignKey(
        "FewShotSet",
        verbose_name=_("few-shot examples"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )
    label_schema = models.ForeignKey(
        LabelSchema,
        verbose_name=_("label schema"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )
    batch_size = models.PositiveIntegerField(_("batch size"), default=100)
    max_concurrent = models.PositiveIntegerField(_("max concurrent requests"), default=10)
    rpm_limit = models.PositiveIntegerField(_("requests per minute"), null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(_("tokens per minute"), null=True, blank=True)
    test_mode = models.BooleanField(_("test mode (first 50)"), default=False)
    only_unconverted = models.BooleanField(_("only unconverted"), default=False)
    use_cache = models.BooleanField(_("use result cache"), default=True)
    overwrite_reviewed = models.BooleanField(_("overwrite reviewed results"), default=False)
    # The selection the job was created from ({"ids": [...]} or a stored admin filter),
    # kept for the record; the Items are the job's actual work list.
    selection = models.JSONField(_("selection"), default=dict, blank=True)

    total_items = models.PositiveIntegerField(_("items"), default=0)
    # error_message is the error's source-language text, error_reason its
    # language-neutral form (None for plain text), shown in the reader's language by
    # error_text (converters/messages.py, issue 12).
    error_message = models.TextField(_("error"), blank=True)
    error_reason = models.JSONField(_("error (language-neutral)"), null=True, blank=True)
    # Claims number their batches from this counter (one batch = one claim = one
    # results file); heartbeat_at is the last sign of life of a task working on the job,
    # which the reconciler uses to tell a lost task from a busy one.
    last_batch_no = models.PositiveIntegerField(_("batches claimed"), default=0)
    heartbeat_at = models.DateTimeField(_("last worker heartbeat"), null=True, blank=True)
    # API calls paid for before they were sent, in blocks (worker.SentLedger), so that a
    # worker killed with calls in flight still counts them; Item.api_calls counts only
    # the calls whose outcome was recorded.
    requests_sent = models.PositiveBigIntegerField(_("API calls sent"), default=0)
    # Batch API mode (conversions/batchapi.py): the requests go out as JSONL files of
    # remote batches (RemoteBatch) at the Batch API's prices instead of one call each.
    # One step works on such a job at a time: it holds the batch lock until
    # batch_lock_until (renewed while it works; a killed step's lock simply expires).
    batch_api = models.BooleanField(_("Batch API mode"), default=False)
    batch_lock_owner = models.CharField(max_length=64, blank=True)
    batch_lock_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["-id"]
        # The admin's launch/pause/resume/cancel/retry buttons need this, not change_job.
        permissions = [("run_job", _("Can launch, pause, resume, cancel and retry jobs"))]
        indexes = [models.Index(fields=["status", "id"], name="job_status_idx")]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def error_text(self) -> str:
        """The error in the active language (converters.messages.shown)."""
        return shown(self.error_message, self.error_reason)


class JobRun(models.Model):
    """A task working on a job now: on which cluster, and its last sign of life.

    A job's tasks are spread over clusters (services.job_run_place), so that one killed
    machine does not stop the job; a run whose heartbeat is older than a lease is dead,
    and a live run of the same job (or the reconciler) queues a task in its place.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="runs")
    owner = models.CharField(max_length=64, unique=True)
    cluster = models.CharField(max_length=200)
    heartbeat_at = models.DateTimeField()

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")

    def __str__(self) -> str:
        return self.owner


class RemoteBatchQuerySet(models.QuerySet):
    def open(self) -> RemoteBatchQuerySet:
        """Remote batches whose results are not recorded yet (any state)."""
        return self.filter(collected_at__isnull=True)


class RemoteBatch(models.Model):
    """One Batch API batch of a job: its input file, the remote id, what came back.

    The row and its items (Item.remote_batch, held under lease_owner "batch:<pk>") are
    written before the file is uploaded, and the remote id as soon as the batch exists,
    so a restart at any point finds every remote batch again (conversions/batchapi.py).
    `state` is the remote status, or "preparing" before the remote batch exists;
    collected_at is set once every result of it has been recorded.
    """

    class State(models.TextChoices):
        PREPARING = "preparing", _("Preparing")
        VALIDATING = "validating", _("Validating")
        IN_PROGRESS = "in_progress", _("In progress")
        FINALIZING = "finalizing", _("Finalizing")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")
        EXPIRED = "expired", _("Expired")
        CANCELLING = "cancelling", _("Cancelling")
        CANCELLED = "cancelled", _("Cancelled")

    ENDED_STATES = (State.COMPLETED, State.FAILED, State.EXPIRED, State.CANCELLED)
    CANCELLABLE_STATES = (State.VALIDATING, State.IN_PROGRESS, State.FINALIZING)

    job = models.ForeignKey(
        Job, verbose_name=_("job"), on_delete=models.CASCADE, related_name="remote_batches"
    )
    seq = models.PositiveIntegerField(_("number"))
    follow_up = models.BooleanField(_("follow-up"), default=False)
    remote_id = models.CharField(_("remote batch id"), max_length=200, blank=True, db_index=True)
    model = models.CharField(_("model"), max_length=100)
    input_file_id = models.CharField(_("input file"), max_length=200, blank=True)
    output_file_id = models.CharField(_("output file"), max_length=200, blank=True)
    error_file_id = models.CharField(_("error file"), max_length=200, blank=True)
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.PREPARING
    )
    requests = models.PositiveIntegerField(_("requests"), default=0)
    input_bytes = models.PositiveBigIntegerField(_("input bytes"), default=0)
    count_total = models.PositiveIntegerField(_("total"), default=0)
    count_completed = models.PositiveIntegerField(_("completed"), default=0)
    count_failed = models.PositiveIntegerField(_("failed"), default=0)
    # Items with the same input as another item of this batch send no request of their
    # own: {item id: custom_id of the request whose answer they take}.
    followers = models.JSONField(default=dict, blank=True)
    error_message = models.TextField(_("error"), blank=True)
    create_attempted_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(_("cancel requested"), null=True, blank=True)
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    collected_at = models.DateTimeField(_("results recorded"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = RemoteBatchQuerySet.as_manager()

    class Meta:
        verbose_name = _("remote batch")
        verbose_name_plural = _("remote batches")
        ordering = ["job", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="remote_batch_job_seq_uniq")
        ]
        indexes = [
            models.Index(
                fields=["job"],
                name="remote_batch_open_idx",
                condition=Q(collected_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return self.remote_id or f"{self.job_id}/{self.seq}"

    @property
    def lease_owner(self) -> str:
        """What its items' lease_owner says while the remote batch holds them."""
        return f"batch:{self.pk}"

    @property
    def ended(self) -> bool:
        return self.state in self.ENDED_STATES


class ItemQuerySet(models.QuerySet):
    def retryable(self, *, category: str | None = None) -> ItemQuerySet:
        """Items a retry puts back to pending: failed and cancelled ones; with a category,
        the items with that error category, needs-review ones (validation failed)
        included. Succeeded items are never retried."""
        if category:
            return self.filter(
                error_category=category,
                status__in=[*Item.RETRYABLE_STATUSES, Item.Status.NEEDS_REVIEW],
            )
        return self.filter(status__in=Item.RETRYABLE_STATUSES)

    def open_for_review(self, *, include_skipped: bool = True) -> ItemQuerySet:
        """Results with LaTeX that no reviewer has decided (skipped ones optionally), and
        failed stems that have per-formula results: a reviewer writes the formulas the
        job could not (conversions/stem_reviews.py)."""
        statuses = Item.OPEN_REVIEW_STATUSES if include_skipped else (Item.ReviewStatus.UNREVIEWED,)
        return self.filter(review_status__in=statuses).filter(Item.reviewable_q())


class Item(models.Model):
    """One question's work and result within one job (DESIGN invariant 1)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        NEEDS_REVIEW = "needs_review", _("Needs review")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")
        SKIPPED = "skipped", _("Skipped")

    # The engine's categories (engine/types.py, which imports no Django) with labels.
    # django-stubs type TextChoices' class syntax only, not this functional one.
    ErrorCategory = models.TextChoices(  # type: ignore[call-overload]
        "ErrorCategory",
        [(c.name, (c.value, ERROR_CATEGORY_LABELS[c])) for c in ErrorCategory],
    )

    class Route(models.TextChoices):
        RULES = "rules", _("Rules")
        LLM = "llm", _("LLM")
        CACHE = "cache", _("Cache")

    class ReviewStatus(models.TextChoices):
        UNREVIEWED = "unreviewed", _("Not reviewed")
        APPROVED = "approved", _("Approved")
        EDITED = "edited", _("Edited and approved")
        REJECTED = "rejected", _("Rejected")
        SKIPPED = "skipped", _("Skipped")

    FINISHED_STATUSES = (Status.SUCCEEDED, Status.NEEDS_REVIEW, Status.FAILED, Status.SKIPPED)
    UNFINISHED_STATUSES = (Status.PENDING, Status.RUNNING)
    RETRYABLE_STATUSES = (Status.FAILED, Status.CANCELLED)
    REVIEWABLE_STATUSES = (Status.SUCCEEDED, Status.NEEDS_REVIEW)
    # A failed stem with per-formula results is reviewable too (stem_reviews.py).
    STEM_REVIEWABLE_STATUSES = (*REVIEWABLE_STATUSES, Status.FAILED)
    OPEN_REVIEW_STATUSES = (ReviewStatus.UNREVIEWED, ReviewStatus.SKIPPED)

    job = models.ForeignKey(
        Job, verbose_name=_("job"), on_delete=models.CASCADE, related_name="items"
    )
    question = models.ForeignKey(
        Question, verbose_name=_("question"), on_delete=models.CASCADE, related_name="items"
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    batch_no = models.PositiveIntegerField(_("batch"), default=0)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    lease_owner = models.CharField(_("lease owner"), max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(_("lease expires"), null=True, blank=True)
    # Batch API mode: the remote batch that last took the item's request(s). While it
    # holds them the item is running with lease_owner "batch:<id>" and no lease expiry,
    # so no claim takes it and no cancel drops it before its answer is recorded.
    remote_batch = models.ForeignKey(
        RemoteBatch,
        verbose_name=_("remote batch"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="items",
    )

    result_latex = models.TextField(_("result LaTeX"), blank=True)
    result_labels = models.JSONField(_("result labels"), null=True, blank=True)
    # A stem's per-formula results (conversions/stems.py); result_latex is the whole stem.
    result_formulas = models.JSONField(_("result formulas"), null=True, blank=True)
    # A stem's formulas as a reviewer fixes them one at a time (stem_reviews.py), kept
    # until every formula is resolved and the stem is approved; None before any fix.
    review_formulas = models.JSONField(_("formulas under review"), null=True, blank=True)
    route = models.CharField(_("route"), max_length=8, choices=Route.choices, blank=True)
    cached = models.BooleanField(_("cache hit"), default=False)

    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    tokens_in = models.PositiveIntegerField(_("tokens in"), default=0)
    tokens_out = models.PositiveIntegerField(_("tokens out"), default=0)
    # Of tokens_in, served from the provider's prompt cache
    # (usage.prompt_tokens_details.cached_tokens), priced at the cached-input price.
    tokens_cached = models.PositiveIntegerField(_("cached input tokens"), default=0)
    cost_usd = models.DecimalField(
        _("cost (USD)"), max_digits=12, decimal_places=6, default=Decimal("0")
    )
    # What the cached input tokens saved against the full input price (pricing.cost).
    prompt_cache_saved_usd = models.DecimalField(
        _("saved by the prompt cache (USD)"), max_digits=12, decimal_places=6, default=Decimal("0")
    )
    # What a cache hit saved: the cost of the call that produced the cached result.
    cost_saved_usd = models.DecimalField(
        _("cost saved (USD)"), max_digits=12, decimal_places=6, default=Decimal("0")
    )
    api_calls = models.PositiveIntegerField(_("API calls"), default=0)
    retries = models.PositiveIntegerField(_("retries"), default=0)

    error_category = models.CharField(
        _("error category"), max_length=20, choices=ErrorCategory.choices, blank=True
    )
    # Stored language-neutrally (converters/messages.py, issue 12): error_message is the
    # source-language text (English; the failures page groups and filters by it),
    # error_reason the message ids and params (None for plain text: an API's words, rows
    # from before), validation_reasons a list of such reasons (plain strings in old
    # rows). error_text and reasons_text give them in the active language.
    error_message = models.TextField(_("error message"), blank=True)
    error_reason = models.JSONField(_("error (language-neutral)"), null=True, blank=True)
    request_excerpt = models.TextField(_("request excerpt"), blank=True)
    response_excerpt = models.TextField(_("response excerpt"), blank=True)

    validation_score = models.FloatField(_("validation score"), null=True, blank=True)
    validation_reasons = models.JSONField(_("validation reasons"), default=list, blank=True)

    review_status = models.CharField(
        _("review"), max_length=12, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    reviewed_latex = models.TextField(_("reviewed LaTeX"), blank=True)
    reviewed_labels = models.JSONField(_("reviewed labels"), null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)

    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True, db_index=True)

    objects = ItemQuerySet.as_manager()

    class Meta:
        verbose_name = _("item")
        verbose_name_plural = _("items")
        ordering = ["id"]
        permissions = [("review_item", _("Can review results (approve, reject, edit)"))]
        constraints = [
            models.UniqueConstraint(fields=["job", "question"], name="item_one_per_job_question"),
        ]
        indexes = [
            models.Index(fields=["job", "status", "id"], name="item_job_status_idx"),
            models.Index(fields=["job", "error_category"], name="item_job_error_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="item_lease_idx"),
            # Latency percentiles of a job (selectors.job_stats) without a sort.
            models.Index(fields=["job", "latency_ms"], name="item_job_latency_idx"),
            models.Index(
                fields=["review_status", "validation_score", "id"], name="item_review_queue_idx"
            ),
            models.Index(
                fields=["error_category", "id"],
                name="item_failures_idx",
                condition=~Q(error_category=""),
            ),
        ]

    def __str__(self) -> str:
        # The question's own id when it is loaded (admin lists select it), never a query.
        if Item.question.is_cached(self):
            return _("%(question)s (job %(job)s)") % {
                "question": self.question.question_id,
                "job": self.job_id,
            }
        return f"{self.job_id}/{self.question_id}"

    @property
    def can_retry(self) -> bool:
        return self.status in self.RETRYABLE_STATUSES

    @property
    def error_text(self) -> str:
        """The error in the active language (converters.messages.shown)."""
        return shown(self.error_message, self.error_reason)

    @property
    def reasons_text(self) -> list[str]:
        """The validation reasons in the active language."""
        return [render(reason) for reason in self.validation_reasons or []]

    @staticmethod
    def reviewable_q() -> models.Q:
        """Items whose result a reviewer can decide: a result with LaTeX, or a stem's
        per-formula results (a failed stem included: its missing formulas are written
        in review)."""
        return (
            models.Q(status__in=Item.REVIEWABLE_STATUSES) & ~models.Q(result_latex="")
        ) | models.Q(status__in=Item.STEM_REVIEWABLE_STATUSES, result_formulas__isnull=False)

    @property
    def can_review(self) -> bool:
        if self.review_status not in self.OPEN_REVIEW_STATUSES:
            return False
        if self.result_formulas is not None:
            return self.status in self.STEM_REVIEWABLE_STATUSES
        return self.status in self.REVIEWABLE_STATUSES and bool(self.result_latex)


class ReviewEvent(models.Model):
    """Who did what to a result, and when: the review history."""

    class Action(models.TextChoices):
        APPROVE = "approve", _("Approved")
        EDIT = "edit", _("Edited and approved")
        REJECT = "reject", _("Rejected")
        SKIP = "skip", _("Skipped")
        LABELS = "labels", _("Corrected labels")
        FORMULA = "formula", _("Fixed one formula of a stem")

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="review_events")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="review_events")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    latex_before = models.TextField(blank=True)
    latex_after = models.TextField(blank=True)
    labels_after = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("review event")
        verbose_name_plural = _("review events")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.item_id}"


class FewShotSet(models.Model):
    """Reviewed results frozen as worked examples for one prompt version (fewshot.py).

    examples: [{"question_id", "item_id", "mathml", "latex", "action"}], in prompt order.
    digest: sha256 of the rendered example messages, the prompt_cache_key's suffix. A set
    never changes; `fewshot refresh` makes a new one, which later jobs use.
    """

    prompt_version = models.CharField(_("prompt version"), max_length=20, db_index=True)
    examples = models.JSONField(_("examples"), default=list)
    digest = models.CharField(_("digest"), max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("few-shot example set")
        verbose_name_plural = _("few-shot example sets")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.prompt_version} #{self.pk} ({len(self.examples)})"


class ModelPriceQuerySet(models.QuerySet["ModelPrice"]):
    def for_model(self, model: str) -> ModelPrice | None:
        """The price row of a model, or of the longest priced prefix (dated snapshots)."""
        if not model:
            return None
        prices = {p.model: p for p in self}
        if model in prices:
            return prices[model]
        prefixes = [name for name in prices if model.startswith(name)]
        return prices[max(prefixes, key=len)] if prefixes else None


class ModelPrice(models.Model):
    """USD per million tokens; seeded by a data migration, edited in the admin.

    The fallback for an endpoint's models without prices of their own (pricing.prices_for).
    """

    model = models.CharField(_("model"), max_length=100, unique=True)
    input_per_mtok = models.DecimalField(_("input $/1M tokens"), max_digits=10, decimal_places=4)
    output_per_mtok = models.DecimalField(_("output $/1M tokens"), max_digits=10, decimal_places=4)
    cached_input_per_mtok = models.DecimalField(
        _("cached input $/1M tokens"),
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("Blank: cached input tokens cost the full input price."),
    )
    batch_discount = models.DecimalField(
        _("Batch API price factor"), max_digits=4, decimal_places=3, default=Decimal("0.5")
    )

    objects = ModelPriceQuerySet.as_manager()

    class Meta:
        verbose_name = _("model price")
        verbose_name_plural = _("model prices")
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        """USD for these tokens at this row's realtime prices, no cached input (not
        quantised); a job's items are priced by conversions/pricing.py."""
        return (self.input_per_mtok * tokens_in + self.output_per_mtok * tokens_out) / Decimal(
            1_000_000
        )


class CacheEntry(models.Model):
    """A finished, validated result keyed on normalised input + backend + model + prompt."""

    key = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, default=Job.Kind.CONVERT)
    result_latex = models.TextField(blank=True)
    result_labels = models.JSONField(null=True, blank=True)
    validation_score = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("cache entry")
        verbose_name_plural = _("cache entries")

    def __str__(self) -> str:
        return self.key


class RateLimitWindow(models.Model):
    """One endpoint's request and token spend in one window, shared by every worker."""

    endpoint = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "window_start"], name="ratelimit_window_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint}@{self.window_start:%H:%M}"


class RecurringJob(models.Model):
    """A job started by a django-q2 schedule: every night at 02:00, convert the questions
    that have no LaTeX yet (services/recurring.py keeps its Schedule in step with it).

    job_settings is a JobSettings mapping (JobSettings.to_mapping): the same settings the
    launch page, `convert` and `label` give a job. The schedule is a cron expression, or
    a time of day (daily_at, read in TIME_ZONE); exactly one of them is set.
    """

    class Questions(models.TextChoices):
        PENDING = "pending", _("Without a result yet")
        ALL = "all", _("All questions")

    name = models.CharField(_("name"), max_length=150, unique=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    kind = models.CharField(
        _("kind"), max_length=10, choices=Job.Kind.choices, default=Job.Kind.CONVERT
    )
    questions = models.CharField(
        _("questions"),
        max_length=10,
        choices=Questions.choices,
        default=Questions.PENDING,
        help_text=_(
            "Without a result yet: no accepted LaTeX (conversion), no labels from the "
            "schema (labeling)."
        ),
    )
    subject = models.CharField(
        _("subject"), max_length=50, blank=True, help_text=_("Blank: every subject.")
    )
    grade = models.CharField(
        _("grade"), max_length=30, blank=True, help_text=_("Blank: every grade.")
    )
    job_settings = models.JSONField(_("job settings"), default=dict)
    daily_at = models.TimeField(_("every day at"), null=True, blank=True)
    cron = models.CharField(_("cron expression"), max_length=100, blank=True)
    schedule = models.OneToOneField(
        "django_q.Schedule",
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # One job per firing of the schedule: the firing's time, set by the run that claimed it.
    last_scheduled_for = models.CharField(max_length=40, blank=True, editable=False)
    last_run_at = models.DateTimeField(_("last run"), null=True, blank=True, editable=False)
    last_job = models.ForeignKey(
        Job,
        verbose_name=_("last job"),
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    last_message = models.TextField(_("last run's message"), blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("recurring job")
        verbose_name_plural = _("recurring jobs")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def cron_expression(self) -> str:
        """The schedule as cron ("0 2 * * *" for daily_at 02:00), in TIME_ZONE."""
        if self.cron:
            return self.cron.strip()
        if self.daily_at is not None:
            return f"{self.daily_at.minute} {self.daily_at.hour} * * *"
        return ""


class JobNotification(models.Model):
    """One message about one job on one channel, written in the transaction that ended
    the job (an outbox): services/notifications.py delivers it, retries it with backoff,
    and records sent_at once, with a conditional UPDATE; last_error says why not yet."""

    class Channel(models.TextChoices):
        EMAIL = "email", _("E-mail")
        WEBHOOK = "webhook", _("Webhook (Slack-compatible)")

    class Event(models.TextChoices):
        FINISHED = "finished", _("Job ended")
        PAUSED = "paused", _("Job paused itself")

    job = models.ForeignKey(
        Job, verbose_name=_("job"), on_delete=models.CASCADE, related_name="notifications"
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    event = models.CharField(_("event"), max_length=10, choices=Event.choices)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"))
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("job notification")
        verbose_name_plural = _("job notifications")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "channel", "event"], name="job_notification_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="job_notification_due_idx",
                condition=Q(sent_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()} {self.job_id} ({self.get_channel_display()})"
