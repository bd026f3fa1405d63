"""Fixtures shared by the whole suite (pytest finds them here; nothing re-exports them).

- fake_openai_server (session): one `manage.py fake_openai` process (mathconv_dev/fakeopenai)
  with default options for the whole run;
- fake_openai (function): that server, reset and back to default options, for one test;
  a test changes options with fake_openai.configure(latency=0.2, rpm=600, ...);
- other_fake_openai (function): a second shared server the same way, for a job's own
  endpoint (fake_openai_factory starts a dedicated one, ~1 s, where a test needs that);
- llm (function): the job settings pointed at that server, prices seeded.
"""

import os
import shutil

import pytest
from django.conf import settings
from django.utils import translation

from mathconv_dev.fakeopenai import FakeOptions
from mathconv_dev.fakeopenai.process import MANAGE_COMMAND, FakeServer
from tests.adminutil import login, staff_user
from tests.jobutil import API_KEY, seed_prices
from tests.settings import subprocess_env


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
    """One fake server for the run, started through the `fake_openai` command the demo uses."""
    server = FakeServer(command=MANAGE_COMMAND, env=subprocess_env()).start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_openai_server):
    """The shared fake server with default options and cleared counters for one test."""
    fake_openai_server.restore()
    yield fake_openai_server
    fake_openai_server.restore()


@pytest.fixture(scope="session")
def second_fake_openai_server():
    """A second fake server for the run: another server than the one the job settings
    point at, for tests about a job's own endpoint."""
    server = FakeServer(command=MANAGE_COMMAND, env=subprocess_env()).start()
    yield server
    server.stop()


@pytest.fixture
def other_fake_openai(second_fake_openai_server):
    """The second shared server with default options and cleared counters for one test
    (restore() clears them again between the steps of a test)."""
    second_fake_openai_server.restore()
    yield second_fake_openai_server
    second_fake_openai_server.restore()


@pytest.fixture
def fake_openai_factory():
    """start(**options) -> a dedicated fake server (FakeOptions fields), stopped after the
    test: for a test that needs a server of its own (a restart, a third endpoint). Each
    costs ~1 s of start and stop; fake_openai and other_fake_openai take options through
    configure() instead."""
    servers: list[FakeServer] = []

    def start(**options) -> FakeServer:
        server = FakeServer(FakeOptions(**options), command=MANAGE_COMMAND, env=subprocess_env())
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def llm(settings, fake_openai):
    """Point the LLM backends at the shared fake server, reset; model prices seeded."""
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_API_KEY = API_KEY
    seed_prices()
    return fake_openai


DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "live_server"}


def pytest_addoption(parser):
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="run only what can behave differently on another database: tests that use the "
        "test database, minus the browser tests and the suites that start their own services "
        "(make test's PostgreSQL run, and one of its two SQLite runs)",
    )
    parser.addoption(
        "--no-database-tests",
        action="store_true",
        help="run only what --database-tests-only leaves out: the tests without the test "
        "database, the browser tests and the suites that start their own services (make "
        "test's other SQLite run; the two SQLite runs together are the whole suite)",
    )


def database_test(item) -> bool:
    """Whether a test is one --database-tests-only selects (the two options split the
    suite in two: every test is in exactly one half)."""
    uses_database = bool(DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))
    uses_database = uses_database or item.get_closest_marker("django_db") is not None
    once = item.get_closest_marker("browser") or item.get_closest_marker("own_services")
    return uses_database and not once


def pytest_collection_modifyitems(config, items):
    only, none = config.getoption("--database-tests-only"), config.getoption("--no-database-tests")
    if only and none:
        raise pytest.UsageError("--database-tests-only and --no-database-tests exclude each other")
    if not (only or none):
        return
    keep, drop = [], []
    for item in items:
        (keep if database_test(item) == bool(only) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    # The run's logs and exports; a subprocess of a later run never shares its tag.
    if os.environ.get("MATHCONV_USE_TEST_DB") != "1":
        shutil.rmtree(settings.TEST_RUN_DIR, ignore_errors=True)


@pytest.fixture
def operator(client):
    """A test client logged in as a member of the operators group."""
    return login(client, staff_user("olga", "operators"))
