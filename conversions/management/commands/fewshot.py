"""`manage.py fewshot show|refresh`: the reviewed results conversion prompts carry as examples.

    python manage.py fewshot show        the current set (what `convert --few-shot` uses)
    python manage.py fewshot refresh     freeze a new set from today's reviewed results

A set never changes: jobs created after a refresh use the new one, jobs already created
keep theirs, so every request of a job starts with the same bytes (prompt caching).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from conversions.engine.prompts import CONVERT_PROMPT_VERSION, MIN_CACHEABLE_TOKENS
from conversions.fewshot import fewshot_current, fewshot_refresh, fewshot_task
from conversions.models import FewShotSet
from conversions.preflight import ConfigurationError


class Command(BaseCommand):
    help = "Show or refresh the few-shot examples (reviewed results) of conversion prompts."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("show", help="Show the current set.")
        sub.add_parser("refresh", help="Freeze a new set from today's reviewed results.")

    def handle(self, *args, **opts):
        if opts["action"] == "refresh":
            try:
                fewshot = fewshot_refresh(prompt_version=CONVERT_PROMPT_VERSION)
            except ConfigurationError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"New few-shot set #{fewshot.pk}.")
            self.show(fewshot)
            return
        fewshot = fewshot_current(CONVERT_PROMPT_VERSION)
        if fewshot is None:
            self.stdout.write(
                "No few-shot set yet: `manage.py fewshot refresh` makes one (the first "
                "`convert --few-shot` job does too)."
            )
            return
        self.show(fewshot)

    def show(self, fewshot: FewShotSet) -> None:
        task = fewshot_task(fewshot)
        tokens = task.prefix_tokens
        edited = sum(1 for row in fewshot.examples if row["action"] == "edit")
        self.stdout.write(
            f"Set #{fewshot.pk} of {fewshot.prompt_version}, {fewshot.created_at:%Y-%m-%d %H:%M}: "
            f"{len(fewshot.examples)} examples ({edited} fixed by a reviewer), prompt prefix "
            f"about {tokens} tokens "
            + (
                "(cacheable)."
                if tokens >= MIN_CACHEABLE_TOKENS
                else f"(under the {MIN_CACHEABLE_TOKENS} tokens OpenAI caches)."
            )
        )
        self.stdout.write(f"prompt_cache_key: {task.prompt_cache_key}")
        for row in fewshot.examples:
            self.stdout.write(f"  {row['question_id']}\t{row['action']}\t{row['latex'][:80]!r}")
