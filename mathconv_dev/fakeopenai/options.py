"""The fake server's options, declared once.

`FakeOptions` is the one place an option is named, typed, defaulted and explained. The
command line of `manage.py fake_openai` and `python -m mathconv_dev.fakeopenai` is built
from it (`add_arguments`, `from_arguments`), the tests and benchmarks start a server with
`FakeOptions(...).to_argv()`, and a running server takes changes to the same fields on
POST /_config (`update`).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field

DEFAULT_MODELS = (
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-4.1-nano",
    "gpt-4o-mini",
    "gpt-4o",
)


def _option(default: object, help: str) -> typing.Any:  # noqa: A002 - argparse's word
    return field(default=default, metadata={"help": help})


@dataclass
class FakeOptions:
    latency: float = _option(0.0, "Seconds per answer, this server's own work included.")
    jitter: float = _option(0.0, "Extra random latency, up to S seconds.")
    rpm: int | None = _option(None, "Requests per minute before answering 429.")
    tpm: int | None = _option(None, "Tokens per minute before answering 429.")
    window: float = _option(
        60.0, "Sliding window in seconds for --rpm/--tpm (scaled: rpm*window/60 per window)."
    )
    error_rate: float = _option(0.0, "Share of requests answered 500/503.")
    timeout_rate: float = _option(
        0.0, "Share of requests that hang (longer than any sane client timeout)."
    )
    hang: float = _option(600.0, "Seconds a hanging request hangs.")
    wrong_rate: float = _option(0.0, "Share of answers that are valid JSON but wrong.")
    garbage_rate: float = _option(0.0, "Share of answers whose content is malformed JSON.")
    truncate_rate: float = _option(
        0.0, "Share of answers whose HTTP body is cut off halfway, then the connection closed."
    )
    storm_every: float = _option(
        0.0, "429 storms: one starts every S seconds, counted from the last reset (0: none)."
    )
    storm_length: float = _option(
        0.0, "429 storms: for S seconds every request gets a 429 until the storm passes."
    )
    seed: int = _option(0, "Seed of the per-input fault decisions.")
    retry_after: float = _option(
        1.0, 'Seconds a forced 429 (an input carrying "fake:status=429") asks to wait.'
    )
    ratelimit_headers: bool = _option(True, "Send x-ratelimit-* headers.")
    reject_temperature: bool = _option(
        False,
        "Answer 400 unsupported_parameter to a request carrying temperature, as OpenAI's "
        "reasoning models (o-series, GPT-5 line) do.",
    )
    cached_tokens: int = _option(
        0,
        "Report this many prompt tokens (at most the prompt) as served from the prompt cache "
        "(usage.prompt_tokens_details.cached_tokens).",
    )
    prompt_cache: bool = _option(
        False,
        "Act as OpenAI's prompt cache: report as cached_tokens the longest prefix of at least "
        "1024 tokens, in 128-token steps, that an earlier request with the same "
        "prompt_cache_key began with (added to --cached-tokens).",
    )
    echo_key: bool = _option(
        False,
        "Repeat the request's bearer token in every error body, as a careless proxy might "
        "(for the tests that the key reaches no database, log or page).",
    )
    models: tuple[str, ...] = _option(DEFAULT_MODELS, "Comma-separated model ids the server knows.")
    batches_api: bool = _option(
        True,
        "Serve the files and batches API (--no-batches-api: answer 404 there, as a generic "
        "OpenAI-compatible server does).",
    )
    batch_delay: float = _option(
        2.0, "Seconds from creating a batch until its requests are done (evenly spread)."
    )
    batch_failure_rate: float = _option(
        0.0, "Share of a batch's requests that fail (a 500 in its error file)."
    )
    batch_expiry_rate: float = _option(
        0.0,
        "Share of a batch's requests that never run: the batch ends expired, with them in "
        "its error file (batch_expired).",
    )
    batch_cancel_delay: float = _option(
        1.0, "Seconds a cancelled batch stays cancelling; requests finished by then are returned."
    )
    batch_max_requests: int = _option(50_000, "Requests allowed in one batch's input file.")

    def update(self, values: dict) -> None:
        """Set the named fields (dashes or underscores); ValueError on an unknown name."""
        names = {f.name for f in dataclasses.fields(self)}
        for name, value in values.items():
            name = name.replace("-", "_")
            if name not in names:
                raise ValueError(f"unknown option {name!r}")
            if name == "models" and value is not None:
                value = tuple(value)
            setattr(self, name, value)

    def to_argv(self) -> list[str]:
        """The command-line flags that give these options (only those off their default)."""
        argv: list[str] = []
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            if value == option.default:
                continue
            flag = _flag(option.name)
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + flag.removeprefix("--"))
            elif isinstance(value, tuple):
                argv += [flag, ",".join(value)]
            else:
                argv += [flag, str(value)]
        return argv

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per field: --latency S, --error-rate F, --no-ratelimit-headers ..."""
        hints = typing.get_type_hints(cls)
        for option in dataclasses.fields(cls):
            flag, help_text = _flag(option.name), option.metadata["help"]
            kind = hints[option.name]
            if kind is bool:
                parser.add_argument(flag, dest=option.name, action="store_true", help=help_text)
                parser.add_argument(
                    "--no-" + flag.removeprefix("--"),
                    dest=option.name,
                    action="store_false",
                    help="Do not: " + help_text[0].lower() + help_text[1:],
                )
                parser.set_defaults(**{option.name: option.default})
            elif typing.get_origin(kind) is tuple:
                parser.add_argument(flag, type=_names, default=option.default, help=help_text)
            else:
                scalar = next(t for t in typing.get_args(kind) or (kind,) if t is not type(None))
                parser.add_argument(flag, type=scalar, default=option.default, help=help_text)

    @classmethod
    def from_arguments(cls, values: argparse.Namespace | dict) -> FakeOptions:
        """The options from parsed arguments (a Namespace or a command's options dict)."""
        values = vars(values) if isinstance(values, argparse.Namespace) else values
        return cls(**{option.name: values[option.name] for option in dataclasses.fields(cls)})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())
