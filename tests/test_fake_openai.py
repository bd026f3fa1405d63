"""The local OpenAI-compatible server, spoken to over real HTTP with the official SDK."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import random
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import openai
import pytest

from conversions.engine.prompts import ConversionTask
from conversions.engine.types import WorkItem
from mathconv_dev.fakeopenai import (
    FakeOptions,
    expected_latex,
    input_key,
    schema_instance,
    wrong_latex,
)
from mathconv_dev.management.commands.fake_openai import Command as FakeOpenAICommand
from tests.jobutil import wait_until

MATHML = (
    "<math><mfrac><mn>1</mn><msup><mi>x</mi><mn>2</mn></msup></mfrac>"
    "<mo>+</mo><msqrt><mn>3</mn></msqrt></math>"
)
LABEL_SCHEMA = {
    "type": "object",
    "properties": {
        "unit": {"type": "string", "enum": ["fractions", "decimals", "functions"]},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
        "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["unit", "difficulty", "keywords"],
    "additionalProperties": False,
}


def client(server, timeout: float = 10) -> openai.OpenAI:
    return _client(server.base_url, timeout)


@functools.cache
def _client(base_url: str, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(api_key="test-key", base_url=base_url, max_retries=0, timeout=timeout)


def convert(server, mathml: str = MATHML, **create_kwargs):
    task = ConversionTask()
    item = WorkItem(item_id=1, ref="q1", mathml=mathml)
    return client(server).chat.completions.with_raw_response.create(
        model="gpt-4.1-mini",
        messages=task.build_messages(item),
        response_format=task.response_format(),
        **create_kwargs,
    )


def labels_request(server, text: str, schema: dict = LABEL_SCHEMA):
    return client(server).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "labels", "strict": True, "schema": schema},
        },
    )


def conforms(value: dict, schema: dict = LABEL_SCHEMA) -> bool:
    props = schema["properties"]
    return (
        set(value) == set(props)
        and value["unit"] in props["unit"]["enum"]
        and isinstance(value["difficulty"], int)
        and 1 <= value["difficulty"] <= 5
        and isinstance(value["keywords"], list)
        and len(value["keywords"]) <= 3
    )


def test_models_and_auth(fake_openai):
    ids = [model.id for model in client(fake_openai).models.list()]
    assert {"gpt-4.1-mini", "gpt-4o-mini"} <= set(ids)

    request = urllib.request.Request(fake_openai.base_url + "/models")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["error"]["code"] == "missing_api_key"


def test_a_client_expecting_100_continue_gets_it_before_sending_the_body(fake_openai):
    # curl sends "Expect: 100-continue" with larger bodies and waits for the interim answer.
    body = json.dumps(
        {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": MATHML}]}
    ).encode()
    url = urlsplit(fake_openai.base_url)
    head = (
        f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer test-key\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode())
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        reply = sock.makefile("rb").read()
    status, _, payload = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 ")
    answer = json.loads(payload)["choices"][0]["message"]["content"]
    assert json.loads(answer) == {"latex": expected_latex(MATHML)}


def test_unknown_model_is_404_model_not_found(fake_openai):
    with pytest.raises(openai.NotFoundError) as caught:
        client(fake_openai).chat.completions.create(
            model="gpt-3-retired", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "model_not_found"


def test_conversion_answer_usage_headers_and_counts(fake_openai):
    raw = convert(fake_openai)
    completion = raw.parse()
    assert json.loads(completion.choices[0].message.content) == {"latex": expected_latex(MATHML)}
    assert expected_latex(MATHML) == "\\frac{1}{x^2}+\\sqrt{3}"
    assert completion.usage.prompt_tokens > 100
    assert completion.usage.completion_tokens > 0
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0
    assert "x-ratelimit-reset-tokens" in raw.headers
    stats = fake_openai.stats()
    assert stats["per_input"] == {input_key(MATHML): 1}
    assert fake_openai.count(MATHML, stats) == 1 and fake_openai.count_ok(MATHML, stats) == 1


def test_strict_schema_is_checked_like_the_real_api(fake_openai):
    loose = {"type": "object", "properties": {"latex": {"type": "string"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client(fake_openai).chat.completions.create(
            model="gpt-4.1-mini",
            messages=[{"role": "user", "content": "x"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "latex_conversion", "strict": True, "schema": loose},
            },
        )
    assert "additionalProperties" in caught.value.message


def test_429_above_rpm_with_retry_after(fake_openai):
    fake_openai.configure(rpm=120, window=1.0)  # two requests per sliding second
    convert(fake_openai)
    convert(fake_openai, mathml="<math><mn>2</mn></math>")
    with pytest.raises(openai.RateLimitError) as caught:
        convert(fake_openai, mathml="<math><mn>3</mn></math>")
    headers = caught.value.response.headers
    assert 0 < int(headers["retry-after-ms"]) <= 1000
    assert headers["retry-after"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert fake_openai.stats()["rate_limited"] == 1


def test_fault_decisions_are_reproducible_per_seed(fake_openai):
    fake_openai.configure(error_rate=0.5, seed=11)
    formulas = [f"<math><mn>{n}</mn></math>" for n in range(16)]

    def statuses() -> list[int]:
        fake_openai.reset()
        result = []
        for mathml in formulas:
            try:
                convert(fake_openai, mathml=mathml)
                result.append(200)
            except openai.InternalServerError as error:
                result.append(error.status_code)
        return result

    first = statuses()
    assert statuses() == first
    assert 200 in first and {500, 503} & set(first)
    fake_openai.configure(seed=12)
    assert statuses() != first


def test_directives_force_faults_for_the_first_attempts(fake_openai):
    mathml = "<math><mn>7</mn><mtext>fake:status=503*2</mtext></math>"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            convert(fake_openai, mathml=mathml)
    convert(fake_openai, mathml=mathml)
    assert fake_openai.count(mathml) == 3 and fake_openai.count_ok(mathml) == 1


def test_hang_outlasts_the_client_timeout(fake_openai):
    fake_openai.configure(timeout_rate=1.0, hang=30)
    with pytest.raises(openai.APITimeoutError):
        client(fake_openai, timeout=0.3).chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert fake_openai.stats()["hangs"] == 1


def test_garbage_and_wrong_answers(fake_openai):
    fake_openai.configure(garbage_rate=1.0)
    content = convert(fake_openai).parse().choices[0].message.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)

    fake_openai.configure(garbage_rate=0.0, wrong_rate=1.0)
    content = convert(fake_openai).parse().choices[0].message.content
    latex = json.loads(content)["latex"]
    assert latex and latex != expected_latex(MATHML)
    assert fake_openai.stats()["wrong"] == 1


@pytest.mark.parametrize(
    ("latex", "mutants"),
    [
        ("\\frac{a+1}{b}", {"\\frac{b}{a+1}", "\\frac{a-1}{b}"}),
        ("x^{2}y", {"xy"}),
        ("\\sqrt[3]{x}", {"x"}),
        ("a=b", {"a<b"}),
    ],
)
def test_wrong_latex_mutations(latex, mutants):
    seen = {wrong_latex(latex, random.Random(seed)) for seed in range(40)}
    assert latex not in seen
    assert mutants <= seen


def test_digits_change_and_nothing_is_left_equal():
    for seed in range(30):
        assert wrong_latex("12", random.Random(seed)) != "12"
        assert wrong_latex("x", random.Random(seed)) != "x"


def test_label_answers_satisfy_the_schema_and_wrong_ones_break_it(fake_openai):
    texts = [f"Question {n}: simplify 1/{n}" for n in range(12)]
    answers = [json.loads(labels_request(fake_openai, t).choices[0].message.content) for t in texts]
    assert all(conforms(answer) for answer in answers)
    # Deterministic per input, varied across inputs.
    assert (
        json.loads(labels_request(fake_openai, texts[0]).choices[0].message.content) == (answers[0])
    )
    assert len({answer["unit"] for answer in answers}) > 1

    fake_openai.configure(wrong_rate=1.0)
    wrong = [json.loads(labels_request(fake_openai, t).choices[0].message.content) for t in texts]
    assert not any(conforms(answer) for answer in wrong)


def test_schema_instance_handles_nullable_and_ranges():
    schema = {
        "type": "object",
        "properties": {
            "note": {"type": ["string", "null"]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        },
    }
    value = schema_instance(schema, random.Random(1))
    assert isinstance(value["note"], str)
    assert 0 <= value["score"] <= 1
    assert set(value["tags"]) <= {"a", "b"}


def test_many_concurrent_keep_alive_clients(fake_openai):
    """50 clients on kept-alive connections, several requests each, all answered."""
    fake_openai.configure(latency=0.05)

    async def main() -> list[int]:
        async with openai.AsyncOpenAI(
            api_key="k", base_url=fake_openai.base_url, max_retries=0
        ) as aclient:

            async def one(n: int) -> int:
                for _ in range(3):
                    await aclient.models.list()
                return n

            return await asyncio.gather(*(one(n) for n in range(50)))

    assert len(asyncio.run(main())) == 50
    stats = fake_openai.stats()
    assert stats["unauthorized"] == 0
    assert stats["connections"] <= 60  # connections were reused, not one per request


def test_every_option_round_trips_through_the_command_line():
    """FakeOptions is the one declaration: its flags parse back to the same options."""
    changed = FakeOptions(
        latency=0.25,
        jitter=0.5,
        rpm=600,
        tpm=90_000,
        window=2.0,
        error_rate=0.1,
        timeout_rate=0.02,
        hang=5.0,
        wrong_rate=0.05,
        garbage_rate=0.01,
        truncate_rate=0.02,
        storm_every=30.0,
        storm_length=5.0,
        seed=7,
        retry_after=3.0,
        ratelimit_headers=False,
        reject_temperature=True,
        cached_tokens=100,
        prompt_cache=True,
        echo_key=True,
        models=("gpt-a", "gpt-b"),
        batches_api=False,
        batch_delay=0.5,
        batch_failure_rate=0.03,
        batch_expiry_rate=0.02,
        batch_cancel_delay=2.0,
        batch_max_requests=100,
    )
    defaults = FakeOptions()
    # Each field differs from its default, so each one has to travel as a flag.
    assert all(
        getattr(changed, option.name) != getattr(defaults, option.name)
        for option in dataclasses.fields(FakeOptions)
    )
    parser = argparse.ArgumentParser()
    FakeOptions.add_arguments(parser)
    assert FakeOptions.from_arguments(parser.parse_args(changed.to_argv())) == changed
    assert FakeOptions.from_arguments(parser.parse_args([])) == defaults
    assert defaults.to_argv() == []


def test_the_command_takes_the_same_options():
    parser = FakeOpenAICommand().create_parser("manage.py", "fake_openai")
    values = vars(parser.parse_args(["--port", "0", "--rpm", "60", "--no-ratelimit-headers"]))
    assert FakeOptions.from_arguments(values) == FakeOptions(rpm=60, ratelimit_headers=False)


def test_a_running_server_takes_every_option_on_config(fake_openai):
    options = dataclasses.asdict(FakeOptions(latency=0.01, seed=3, models=("gpt-x",)))
    assert fake_openai.configure(**options) == {**options, "models": ["gpt-x"]}
    with pytest.raises(urllib.error.HTTPError) as caught:
        fake_openai.configure(no_such_option=1)
    assert caught.value.code == 400


def test_a_429_storm_answers_everything_429_until_it_passes(fake_openai):
    fake_openai.configure(storm_every=3600, storm_length=1800)
    fake_openai.reset()  # the storm starts now and lasts half an hour
    with pytest.raises(openai.RateLimitError) as caught:
        convert(fake_openai)
    assert 1790 <= int(caught.value.response.headers["retry-after"]) <= 1800
    fake_openai.configure(storm_every=0, storm_length=0)
    convert(fake_openai)
    stats = fake_openai.stats()
    assert (stats["storm_429"], stats["rate_limited"], stats["ok"]) == (1, 1, 1)


def test_a_truncated_body_is_cut_off_and_the_connection_closed(fake_openai):
    fake_openai.configure(truncate_rate=1.0)
    with pytest.raises(openai.APIConnectionError):
        convert(fake_openai)
    stats = fake_openai.stats()
    assert (stats["truncated"], stats["ok"]) == (1, 0)


# --- the files and batches API --------------------------------------------------------------


def batch_lines(count: int, *, model: str = "gpt-4.1-mini", start: int = 0) -> bytes:
    task = ConversionTask()
    lines = []
    for n in range(start, start + count):
        item = WorkItem(item_id=n, ref=str(n), mathml=f"<math><mn>{n}</mn><mi>x</mi></math>")
        body = {"model": model, "messages": task.build_messages(item)}
        body["response_format"] = task.response_format()
        line = {"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions"}
        lines.append(json.dumps({**line, "body": body}))
    return ("\n".join(lines) + "\n").encode()


def submit(client: openai.OpenAI, content: bytes, **metadata: str):
    uploaded = client.files.create(file=("in.jsonl", content), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata or None,
    )


def wait_for(client: openai.OpenAI, batch_id: str, status: str):
    def ended():
        found = client.batches.retrieve(batch_id)
        return found if found.status == status else None

    return wait_until(ended, timeout=20)


def test_the_batch_api_answers_every_line_in_any_order_and_counts_them(fake_openai):
    fake_openai.configure(batch_delay=0.3, batch_failure_rate=0.2, batch_expiry_rate=0.1)
    client = openai.OpenAI(api_key="k", base_url=fake_openai.base_url, max_retries=0)
    content = batch_lines(40)
    created = submit(client, content, tag="t1")
    assert created.status == "validating" and created.request_counts.total == 40
    uploaded = client.files.retrieve(created.input_file_id)
    assert (uploaded.purpose, uploaded.bytes) == ("batch", len(content))
    assert client.files.content(created.input_file_id).content == content
    assert [b.id for b in client.batches.list(limit=5)] == [created.id]

    done = wait_for(client, created.id, "expired")  # some requests never ran
    counts = done.request_counts
    assert counts.total == 40 and counts.completed + counts.failed == 40
    output = client.files.content(done.output_file_id).text.splitlines()
    errors = client.files.content(done.error_file_id).text.splitlines()
    answered = [json.loads(line) for line in output]
    assert len(answered) == counts.completed and 20 <= counts.completed < 40
    ids = [line["custom_id"] for line in answered]
    assert ids != sorted(ids, key=lambda c: int(c[1:]))  # output order is not input order
    for line in answered:
        n = int(line["custom_id"][1:])
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        assert json.loads(content) == {
            "latex": expected_latex(f"<math><mn>{n}</mn><mi>x</mi></math>")
        }
    failed = [json.loads(line) for line in errors]
    codes = {
        (line["error"] or {}).get("code") or line["response"]["status_code"] for line in failed
    }
    assert codes == {"batch_expired", 500}
    stats = fake_openai.stats()
    assert (stats["files_uploaded"], stats["batches_created"], stats["batch_requests"]) == (
        1,
        1,
        40,
    )
    assert stats["batch_ok"] == counts.completed
    assert stats["batch_failed"] + stats["batch_expired"] == counts.failed
    assert (
        sum(stats["per_input"].values()) == 40
        and sum(stats["per_input_ok"].values()) == counts.completed
    )
    assert stats["requests"] == 0


def test_a_cancelled_batch_returns_what_finished_while_cancelling(fake_openai):
    fake_openai.configure(batch_delay=2.0, batch_cancel_delay=0.5)
    client = openai.OpenAI(api_key="k", base_url=fake_openai.base_url, max_retries=0)
    created = submit(client, batch_lines(20))
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = wait_for(client, created.id, "cancelled")
    assert 0 < done.request_counts.completed < 20
    errors = [
        json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()
    ]
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(created.id)  # ended: nothing to cancel


def test_a_batch_file_that_breaks_the_rules_fails_validation(fake_openai):
    fake_openai.configure(batch_max_requests=10)
    client = openai.OpenAI(api_key="k", base_url=fake_openai.base_url, max_retries=0)
    mixed = batch_lines(3) + batch_lines(2, model="gpt-4o-mini", start=3)
    repeated = batch_lines(2) + batch_lines(1)
    for content, code in (
        (mixed, "mixed_models"),
        (repeated, "duplicate_custom_id"),
        (batch_lines(11), "too_many_requests"),
    ):
        failed = submit(client, content)
        assert failed.status == "failed" and failed.failed_at
        assert code in {error.code for error in failed.errors.data}
    assert fake_openai.stats()["batch_requests"] == 0  # nothing was run


def test_without_the_batch_api_files_and_batches_are_404(fake_openai):
    fake_openai.configure(batches_api=False)
    client = openai.OpenAI(api_key="k", base_url=fake_openai.base_url, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.batches.list(limit=1)
    with pytest.raises(openai.NotFoundError):
        client.files.create(file=("in.jsonl", batch_lines(1)), purpose="batch")


def test_a_port_in_use_is_one_line_not_a_traceback():
    # README: a second `fake_openai --port 8001` while `make demo` serves on 8001.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mathconv_dev.fakeopenai", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"fake_openai: port {port} on 127.0.0.1 is in use (another server, e.g. the one "
        "`make demo` starts, may already answer there); nothing was started.\n"
    )
