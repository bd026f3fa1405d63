import os
import shutil

import pytest
from django.conf import settings
from django.utils import translation

from tests.fakeserver import FakeServer


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in LANGUAGE_CODE: a request with Accept-Language: ko through the
    test client leaves Korean active in the thread (LocaleMiddleware activates it and
    nothing resets it), which would change the language of every later test."""
    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(scope="session")
def fake_openai_server():
    """One `manage.py fake_openai` process for the whole run (see tests/fakeserver.py)."""
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_openai_server):
    """The shared fake server with default options and cleared counters for one test."""
    fake_openai_server.restore()
    yield fake_openai_server
    fake_openai_server.restore()


@pytest.fixture
def fake_openai_factory():
    """start(*flags, **options) -> a dedicated FakeServer, stopped after the test."""
    servers = []

    def start(*flags, **options):
        server = FakeServer(*flags, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def pytest_sessionfinish(session, exitstatus):
    # The run's logs and exports; a subprocess of a later run never shares its tag.
    if os.environ.get("MATHCONV_USE_TEST_DB") != "1":
        shutil.rmtree(settings.TEST_RUN_DIR, ignore_errors=True)
