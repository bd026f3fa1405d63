"""The local OpenAI-compatible server (server.py), its options (options.py), its answers
(answers.py) and a handle on a server process for tests and benchmarks (process.py)."""

from mathconv_dev.fakeopenai.answers import expected_latex, input_key, schema_instance, wrong_latex
from mathconv_dev.fakeopenai.options import DEFAULT_MODELS, FakeOptions
from mathconv_dev.fakeopenai.process import FakeServer

__all__ = [
    "DEFAULT_MODELS",
    "FakeOptions",
    "FakeServer",
    "expected_latex",
    "input_key",
    "schema_instance",
    "wrong_latex",
]
