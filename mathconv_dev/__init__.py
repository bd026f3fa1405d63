"""Development tooling for mathconv: the local OpenAI-compatible server that tests,
benchmarks and `make demo` talk to (`mathconv_dev.fakeopenai`).

It depends on the app (it answers with the app's own converter), never the reverse: no
module under conversions/ imports it (tests/test_layout.py checks that). It is a Django app
only so that `manage.py fake_openai` exists; it has no models, URLs or templates.
"""
