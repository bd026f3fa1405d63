"""The soak at reduced size (bench/soak.py runs the full one): 150 items on PostgreSQL,
two qclusters, one SIGKILL, while the fake server injects every fault it has."""

from __future__ import annotations

import pytest
from django.db import connection

from bench.soak import run_soak
from mathconv_dev.fakeopenai import FakeOptions
from mathconv_dev.fakeopenai.process import MANAGE_COMMAND, FakeServer
from tests.jobutil import API_KEY, seed_prices
from tests.settings import subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_soak_with_faults_and_a_killed_cluster_loses_and_duplicates_nothing(settings, request):
    if connection.vendor != "postgresql":
        pytest.skip("the soak runs on PostgreSQL (DATABASE_URL)")
    settings.MATHCONV_LEASE_SECONDS = 3
    settings.MATHCONV_CONCURRENCY_PER_TASK = 4  # concurrency 8: two tasks
    seed_prices()
    server = FakeServer(FakeOptions(latency=0.05), command=MANAGE_COMMAND, env=subprocess_env())
    server.start()
    request.addfinalizer(server.stop)
    env = subprocess_env(
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY=API_KEY,
        OPENAI_TIMEOUT="1",
        MATHCONV_LEASE_SECONDS="3",
        MATHCONV_CONCURRENCY_PER_TASK="4",
        Q_WORKERS="2",
    )
    result = run_soak(
        server=server, items=150, kills=1, cluster_env=env, concurrency=8, timeout_s=300
    )
    served = result.server
    # Every fault happened...
    assert served["storm_429"] and served["errors"] and served["hangs"]
    assert served["truncated"] and served["wrong"]
    # ...and every item has exactly one result, none written or called after it finished.
    assert (result.lost, result.duplicated) == (0, 0)
    assert sum(result.statuses.values()) == 150
    assert result.statuses["succeeded"] >= 135
    # Wrong answers are caught by validation, not stored as succeeded.
    assert result.failed_by_category["validation_failed"] >= 1
    assert result.requests_sent >= served["requests"]
