"""Settings for the test suite: production settings plus a test-only secret key.

Subprocesses the tests start (qcluster, runserver, fake_openai) inherit
DJANGO_SETTINGS_MODULE=tests.settings.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")

from mathconv.settings import *  # noqa: E402,F403
