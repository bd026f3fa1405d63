"""Few-shot examples from the team's own reviewed results, frozen per prompt version.

A conversion job may carry worked examples (engine/prompts.py: user/assistant turns after
the system prompt). They come from a FewShotSet: a fixed list chosen once from the
questions whose LaTeX a reviewer approved or fixed, and never changed afterwards, so that
every request of a job, and of every later job until someone refreshes the set, starts
with the same bytes (OpenAI's prompt cache hits on that prefix; prompt_cache_key names it).

Selection (fewshot_select), deterministic for a given bank and prompt version:
- questions in the APPROVED state with accepted LaTeX, bare formulas (no stems);
- fixed ones first (a reviewer's edit, ReviewEvent EDIT): they teach what the model got
  wrong; then approved ones; within each, ordered by sha256(prompt version, question id),
  a spread over the bank that does not move when new questions arrive;
- each must pass the validator and the no-silent-loss check (results.checked), carry no
  forbidden LaTeX command, stay under MAX_EXAMPLE_CHARS and hold none of the prompt's
  block markers; one example per distinct MathML;
- examples are added until the prefix (system prompt + examples) reaches TARGET_TOKENS
  (past OpenAI's 1,024-token minimum for caching) or MAX_EXAMPLES.

Reviewer-made LaTeX and bank MathML are untrusted: they enter the prompt as data (the
MathML between markers in a user turn, the LaTeX as a JSON string in an assistant turn),
never in the system prompt's instructions.
"""

from __future__ import annotations

import hashlib

from django.db import transaction

from conversions.engine.prompts import (
    CONVERT_PROMPT_VERSION,
    MIN_CACHEABLE_TOKENS,
    ConversionTask,
    Example,
    prefix_digest,
)
from conversions.models import FewShotSet, Job, Question, ReviewEvent
from conversions.preflight import ConfigurationError
from conversions.results import checked
from conversions.sanitize import latex_is_renderable
from conversions.stems import is_stem

MAX_EXAMPLES = 16
MAX_EXAMPLE_CHARS = 1500  # MathML plus LaTeX of one example
# The prefix the selection aims for: OpenAI's minimum plus a margin for the estimate
# (four characters a token; markup tokenizes denser, so the real count is higher).
TARGET_TOKENS = MIN_CACHEABLE_TOKENS + 200
MARKERS = ("<<<", ">>>")
CHUNK = 200  # candidates read from the database at a time


def _rank(prompt_version: str, question_id: str) -> str:
    return hashlib.sha256(f"{prompt_version}\x1f{question_id}".encode()).hexdigest()


def _usable(mathml: str, latex: str) -> bool:
    if not latex or len(mathml) + len(latex) > MAX_EXAMPLE_CHARS or is_stem(mathml):
        return False
    if any(marker in text for marker in MARKERS for text in (mathml, latex)):
        return False
    if not latex_is_renderable(latex):
        return False
    ok, _score, _reasons = checked(mathml, latex)
    return ok


def fewshot_select(prompt_version: str = CONVERT_PROMPT_VERSION) -> list[dict]:
    """The examples a new set would hold now: [{"question_id", "mathml", "latex",
    "action": "edit"|"approve"}], in prompt order (see the module docstring)."""
    accepted = Question.objects.filter(
        conversion_state=Question.ConversionState.APPROVED, formulas__isnull=True
    ).exclude(latex="")
    fixed = set(
        ReviewEvent.objects.filter(
            action=ReviewEvent.Action.EDIT, question__in=accepted.values("pk")
        ).values_list("question_id", flat=True)
    )
    order = sorted(
        accepted.values_list("pk", "question_id"),
        key=lambda row: (row[0] not in fixed, _rank(prompt_version, row[1])),
    )
    chosen: list[dict] = []
    seen: set[str] = set()
    for start in range(0, len(order), CHUNK):
        ids = [pk for pk, _ in order[start : start + CHUNK]]
        rows = accepted.filter(pk__in=ids).in_bulk(ids)
        for pk in ids:
            question = rows[pk]
            mathml, latex = question.mathml.strip(), question.latex.strip()
            if mathml in seen or not _usable(mathml, latex):
                continue
            seen.add(mathml)
            chosen.append(
                {
                    "question_id": question.question_id,
                    "mathml": mathml,
                    "latex": latex,
                    "action": "edit" if pk in fixed else "approve",
                }
            )
            task = ConversionTask(examples=examples_of(chosen))
            if len(chosen) >= MAX_EXAMPLES or task.prefix_tokens >= TARGET_TOKENS:
                return chosen
    return chosen


def examples_of(rows: list[dict]) -> tuple[Example, ...]:
    return tuple(Example(mathml=row["mathml"], latex=row["latex"]) for row in rows)


def fewshot_refresh(*, prompt_version: str = CONVERT_PROMPT_VERSION, user=None) -> FewShotSet:
    """Freeze a new set from today's reviewed results; later jobs use it, running jobs
    keep theirs. ConfigurationError when no reviewed result qualifies."""
    rows = fewshot_select(prompt_version)
    if not rows:
        raise ConfigurationError(
            "No reviewed result can serve as a few-shot example yet: approve or fix some "
            "conversion results first (review queue), then refresh."
        )
    task = ConversionTask(examples=examples_of(rows))
    return FewShotSet.objects.create(
        prompt_version=prompt_version,
        examples=rows,
        digest=prefix_digest(task.prefix),
        created_by=user if getattr(user, "pk", None) else None,
    )


def fewshot_current(prompt_version: str = CONVERT_PROMPT_VERSION) -> FewShotSet | None:
    """The newest set of this prompt version, or None."""
    return FewShotSet.objects.filter(prompt_version=prompt_version).order_by("-id").first()


def fewshot_for_job(prompt_version: str = CONVERT_PROMPT_VERSION) -> FewShotSet:
    """The set a new few-shot job uses: the current one, frozen now if there is none."""
    with transaction.atomic():
        current = fewshot_current(prompt_version)
        return current if current is not None else fewshot_refresh(prompt_version=prompt_version)


def fewshot_task(fewshot: FewShotSet | None) -> ConversionTask:
    """The conversion task with this set's examples (none for None); its prefix and
    prompt_cache_key are the same for every job with the same set."""
    if fewshot is None:
        return ConversionTask()
    return ConversionTask(examples=examples_of(fewshot.examples), examples_id=fewshot.digest[:12])


def conversion_task(job: Job) -> ConversionTask:
    """The engine task of a conversion job: with its frozen examples when it has a set."""
    return fewshot_task(job.few_shot_set)


def few_shot_prompt_version(fewshot: FewShotSet) -> str:
    """Job.prompt_version of a job with this set: the base version plus the set's id, so
    results (and the result cache) of different example sets are told apart."""
    return f"{fewshot.prompt_version}+fs{fewshot.pk}"[:20]
