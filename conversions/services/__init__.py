"""Write-side workflows, by concern: jobs (create, steer, retry, reconcile), items
(claim, lease, record), Batch API remote batches (batches.py: the step lock, remote
batch rows and the items they hold; conversions/batchapi.py imports them from there),
notifications (the outbox of job messages) and recurring jobs (schedules).
Plain sync ORM code with keyword-only arguments.

Reads live in conversions/selectors.py, the HTTP pre-flight check in preflight.py,
raw SQL in rowwrite.py, prices on ModelPrice.objects.for_model, files in exporting.py.
Callers use `services.<workflow>`; the modules below hold them.
"""

from conversions.preflight import ConfigurationError
from conversions.services.items import (
    Batch,
    items_cancel,
    items_claim,
    items_release,
    items_renew_lease,
    job_count_sent,
    lease_duration,
    outcomes_record,
)
from conversions.services.jobs import (
    items_retry,
    job_cancel,
    job_create,
    job_enqueue,
    job_fail,
    job_finish_if_done,
    job_parallel_tasks,
    job_pause,
    job_resume,
    job_retry_with,
    job_run_end,
    job_run_place,
    job_runs_replace_dead,
    job_start,
    jobs_reconcile,
    task_concurrency,
)
from conversions.services.notifications import (
    notification_deliver,
    notifications_create,
    notifications_requeue_due,
)
from conversions.services.recurring import (
    recurring_job_delete,
    recurring_job_launch,
    recurring_job_sync,
)

__all__ = [
    "Batch",
    "ConfigurationError",
    "items_cancel",
    "items_claim",
    "items_release",
    "items_renew_lease",
    "items_retry",
    "job_retry_with",
    "job_cancel",
    "job_count_sent",
    "job_create",
    "job_enqueue",
    "job_fail",
    "job_finish_if_done",
    "job_parallel_tasks",
    "job_pause",
    "job_resume",
    "job_run_end",
    "job_run_place",
    "job_runs_replace_dead",
    "job_start",
    "jobs_reconcile",
    "lease_duration",
    "notification_deliver",
    "notifications_create",
    "notifications_requeue_due",
    "outcomes_record",
    "recurring_job_delete",
    "recurring_job_launch",
    "recurring_job_sync",
    "task_concurrency",
]
