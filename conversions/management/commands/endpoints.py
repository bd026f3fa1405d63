"""`manage.py endpoints list|add|check`: the OpenAI-compatible servers jobs run on.

    python manage.py endpoints list
    python manage.py endpoints add NAME --base-url URL [--key-env VAR]
        [--kind openai|azure|compatible] [--api-version V] [--rpm N] [--tpm N]
    python manage.py endpoints check NAME [--model M]

Keys stay in the environment: --key-env names the variable (omit it for a server that
needs no key). `check` reads the key and calls GET /models from this process, so run it
where the workers run.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from conversions.endpoints import endpoint_default, endpoint_option
from conversions.jobsettings import default_model
from conversions.models import Endpoint, Job
from conversions.preflight import ConfigurationError, check_endpoint


class Command(BaseCommand):
    help = "List, add or check the endpoints (OpenAI-compatible servers) jobs run on."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="List the endpoints (the default one is created if missing).")
        add = sub.add_parser("add", help="Add an endpoint.")
        add.add_argument("name", help="A unique name, used by convert/label --endpoint.")
        add.add_argument("--base-url", required=True, help="The API base URL (…/v1).")
        add.add_argument(
            "--key-env",
            default="",
            help="The NAME of the environment variable holding the key (not the key); "
            "omit it for a server that needs no key.",
        )
        add.add_argument(
            "--kind",
            choices=Endpoint.Kind.values,
            default=Endpoint.Kind.COMPATIBLE,
            help="openai, azure or compatible (default compatible).",
        )
        add.add_argument("--api-version", default="", help="Azure OpenAI api-version.")
        add.add_argument("--rpm", type=int, default=None, help="Requests per minute allowed.")
        add.add_argument("--tpm", type=int, default=None, help="Tokens per minute allowed.")
        check = sub.add_parser("check", help="Check key, reachability and model from here.")
        check.add_argument("name", help="The endpoint's name.")
        check.add_argument(
            "--model",
            default="",
            help="The model to look for (default: the default conversion model).",
        )

    def handle(self, *args, **opts):
        getattr(self, f"do_{opts['action']}")(opts)

    def do_list(self, opts) -> None:
        endpoint_default()
        for e in Endpoint.objects.all():
            self.stdout.write(
                f"{e.name}\t{e.kind}\t{e.url}\tkey={e.key_env or '-'}"
                f"\tapi-version={e.api_version or '-'}\trpm={e.rpm_limit or '-'}"
                f"\ttpm={e.tpm_limit or '-'}"
            )

    def do_add(self, opts) -> None:
        if Endpoint.objects.filter(name=opts["name"]).exists():
            raise CommandError(f"An endpoint named {opts['name']!r} exists already.")
        if opts["kind"] == Endpoint.Kind.AZURE and not opts["api_version"]:
            raise CommandError("An azure endpoint needs --api-version.")
        endpoint = Endpoint.objects.create(
            name=opts["name"],
            kind=opts["kind"],
            base_url=opts["base_url"],
            key_env=opts["key_env"],
            api_version=opts["api_version"],
            rpm_limit=opts["rpm"],
            tpm_limit=opts["tpm"],
        )
        self.stdout.write(f"Endpoint {endpoint.name} added ({endpoint.url}).")

    def do_check(self, opts) -> None:
        endpoint = endpoint_option(opts["name"])
        if endpoint is None:  # an empty name
            raise CommandError("Name the endpoint to check (`endpoints list` shows them).")
        model = opts["model"] or default_model(kind=Job.Kind.CONVERT, backend=Job.Backend.OPENAI)
        try:
            check_endpoint(endpoint=endpoint, model=model)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Endpoint {endpoint.name} ({endpoint.url}) answers and has {model}.")
