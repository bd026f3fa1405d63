"""Batch API workflows on the database: one step per job at a time, remote batch rows, and
the items a remote batch holds (conversions/batchapi.py drives them).

The guards are the realtime claim code's (services/items.py): an item is taken only
while it is pending (items_claim); it is handed to a remote batch only while the step
that claimed it still holds it; while the remote batch holds it, it is running under
lease_owner "batch:<remote batch id>" with no lease expiry (no claim takes it, no
cancel drops it); and its result is written, or it goes back to pending, only WHERE
status=running AND lease_owner="batch:<id>". So a finished item is never sent again and
never gets a second result, whichever step (or a duplicate of it) comes along.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from conversions.cache import CachedResult, cache_store
from conversions.models import Item, Job, RemoteBatch
from conversions.services.items import items_mark_cancelled, lease_duration


def batch_lock(*, job: Job, owner: str) -> bool:
    """Take the job's step lock for one lease (settings.MATHCONV_LEASE_SECONDS); False
    while another live step holds it. A killed step's lock expires with its lease."""
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job.pk)
        .filter(
            Q(batch_lock_until__isnull=True)
            | Q(batch_lock_until__lt=now)
            | Q(batch_lock_owner=owner)
        )
        .update(batch_lock_owner=owner, batch_lock_until=now + lease_duration(), heartbeat_at=now)
    )


def batch_lock_renew(*, job: Job, owner: str) -> bool:
    """Extend the lock (and the job's heartbeat); False: it was lost (expired and taken)."""
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job.pk, batch_lock_owner=owner).update(
            batch_lock_until=now + lease_duration(), heartbeat_at=now
        )
    )


def batch_unlock(*, job: Job, owner: str) -> None:
    Job.objects.filter(pk=job.pk, batch_lock_owner=owner).update(
        batch_lock_owner="", batch_lock_until=None
    )


def remote_batch_new(*, job: Job, model: str) -> RemoteBatch:
    """The next remote batch row of the job, preparing (no file, no remote id yet)."""
    with transaction.atomic():
        list(Job.objects.select_for_update().filter(pk=job.pk).values_list("pk"))
        seq = (job.remote_batches.aggregate(n=Max("seq"))["n"] or 0) + 1
        return RemoteBatch.objects.create(job=job, seq=seq, model=model)


def remote_batch_assign(
    *, remote: RemoteBatch, owner: str, item_ids: Sequence[int], followers: dict[str, str]
) -> int:
    """Hand items this step claimed to the remote batch, before its file is uploaded.

    followers: {item id: custom_id} of items that take another request's answer.
    Returns how many items the remote batch now holds of these.
    """
    with transaction.atomic():
        moved = Item.objects.filter(
            pk__in=list(item_ids),
            job_id=remote.job_id,
            status=Item.Status.RUNNING,
            lease_owner=owner,
        ).update(lease_owner=remote.lease_owner, lease_expires_at=None, remote_batch=remote)
        fields = ["updated_at"]
        if followers:
            remote.followers = {**remote.followers, **followers}
            fields.append("followers")
        if not remote.follow_up and (
            Item.objects.filter(pk__in=list(item_ids), attempts__gt=1).exists()
        ):
            remote.follow_up = True
            fields.append("follow_up")
        remote.save(update_fields=fields)
    return moved


def remote_batch_save(remote: RemoteBatch, **fields) -> None:
    """Set fields of the row (and updated_at) in one UPDATE."""
    for name, value in fields.items():
        setattr(remote, name, value)
    remote.save(update_fields=[*fields, "updated_at"])


def remote_batch_created(*, remote: RemoteBatch, remote_id: str, state: str, **fields) -> None:
    """Store the remote id the moment the batch exists; its requests count as sent."""
    with transaction.atomic():
        remote_batch_save(
            remote, remote_id=remote_id, state=state, submitted_at=timezone.now(), **fields
        )
        Job.objects.filter(pk=remote.job_id).update(
            requests_sent=F("requests_sent") + remote.requests
        )


def remote_items(remote: RemoteBatch) -> QuerySet[Item]:
    """The items the remote batch still holds (no result yet)."""
    return Item.objects.filter(
        remote_batch=remote, status=Item.Status.RUNNING, lease_owner=remote.lease_owner
    )


def remote_items_requeue(*, remote: RemoteBatch, item_ids: Iterable[int], sent: bool) -> int:
    """Back to pending for a follow-up batch: requests that failed or expired (sent: the
    request counts as an API call and a retry), or items that took another request's
    answer that did not succeed (not sent)."""
    changes: dict[str, Any] = {
        "status": Item.Status.PENDING,
        "lease_owner": "",
        "lease_expires_at": None,
    }
    if sent:
        changes.update(api_calls=F("api_calls") + 1, retries=F("retries") + 1)
    return remote_items(remote).filter(pk__in=list(item_ids)).update(**changes)


def remote_items_release(*, remote: RemoteBatch, item_ids: Iterable[int] | None = None) -> int:
    """Back to pending as they were (the remote batch could not run them at all)."""
    items = remote_items(remote)
    if item_ids is not None:
        items = items.filter(pk__in=list(item_ids))
    return items.update(status=Item.Status.PENDING, lease_owner="", lease_expires_at=None)


def remote_items_cancel(*, remote: RemoteBatch, item_ids: Iterable[int] | None = None) -> int:
    """Cancelled: the job was cancelled and the remote batch returned nothing for them."""
    items = remote_items(remote)
    if item_ids is not None:
        items = items.filter(pk__in=list(item_ids))
    return items_mark_cancelled(items)


def remote_item_stem_partial(
    *,
    remote: RemoteBatch,
    item_id: int,
    formulas: list,
    tokens_in: int,
    tokens_out: int,
    cost_usd: Decimal,
    api_calls: int,
    cache: Sequence[CachedResult],
) -> bool:
    """A stem whose formulas came back in part: keep the answered formulas' entries (the
    next batch sends only the others), add what the calls cost, back to pending."""
    with transaction.atomic():
        changed = (
            remote_items(remote)
            .filter(pk=item_id)
            .update(
                status=Item.Status.PENDING,
                lease_owner="",
                lease_expires_at=None,
                result_formulas=formulas,
                tokens_in=F("tokens_in") + tokens_in,
                tokens_out=F("tokens_out") + tokens_out,
                cost_usd=F("cost_usd") + cost_usd,
                api_calls=F("api_calls") + api_calls,
                retries=F("retries") + 1,
            )
        )
        if changed and cache:
            cache_store(results=cache, kind=Job.Kind.CONVERT)
    return bool(changed)


def remote_batches_open(*, job: Job) -> QuerySet[RemoteBatch]:
    return job.remote_batches.open().order_by("seq")
