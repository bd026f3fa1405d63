"""Settings for the test suite: production settings plus a test-only secret key.

Each pytest run gets its own test database name (a tag exported to the environment),
so that runs started side by side do not share one. Subprocesses a test starts
(qcluster, runserver, fake_openai) inherit DJANGO_SETTINGS_MODULE=tests.settings and the
tag; with MATHCONV_USE_TEST_DB=1 they open the test database itself instead of the
normal one. `tests.settings.subprocess_env()` builds that environment.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("MATHCONV_TEST_DB_TAG", str(os.getpid()))

from mathconv.settings import *  # noqa: E402,F403
from mathconv.settings import DATABASES, VAR_DIR  # noqa: E402

_TAG = os.environ["MATHCONV_TEST_DB_TAG"]
_default = DATABASES["default"]
if _default["ENGINE"].endswith("sqlite3"):
    _default["TEST"] = {"NAME": str(VAR_DIR / f"test-{_TAG}.sqlite3")}
else:
    _default["TEST"] = {"NAME": f"test_mathconv_{_TAG}"}

if os.environ.get("MATHCONV_USE_TEST_DB") == "1":
    _default["NAME"] = _default["TEST"]["NAME"]

# The test users' passwords with a fast hasher (Django's advice for test suites): the
# default PBKDF2's 1,000,000 iterations cost ~0.2 s of CPU for each user created or
# logged in through a form, some 150 a run. Subprocesses use these settings too, so a
# user the test made logs in there; production keeps Django's default hashers.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Everything a run writes besides its database goes under one folder, removed at the end
# of the run (tests/conftest.py).
TEST_RUN_DIR = VAR_DIR / "test-runs" / _TAG
MATHCONV_LOG_DIR = TEST_RUN_DIR / "logs"
MATHCONV_EXPORT_DIR = TEST_RUN_DIR / "exports"
MATHCONV_UPLOAD_DIR = TEST_RUN_DIR / "uploads"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that must work on this run's test database."""
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", MATHCONV_USE_TEST_DB="1")
    env.update(extra)
    return env
