"""django-q2's qcluster, made to stop when systemd signals the whole process group.

systemd stops a service by sending SIGTERM to every process of its group (as does
`kill -- -PGID`). django-q2 1.11's sentinel process resets SIGTERM to the default
action, so that signal kills it at once, most often while it sleeps in
`stop_event.wait()`. The cluster process's own SIGTERM handler then calls
`stop_event.set()`, and multiprocessing's `Condition.notify_all()` waits until every
sleeper has acknowledged the wake-up, the dead sentinel included: the cluster process
waited forever beside its defunct child, until SIGKILL.

Here the sentinel ignores SIGTERM and stops its processes when the cluster process
tells it to (through stop_event), as it does when only the cluster process is
signalled. Workers get the default action back when they start
(conversions.apps.warm_worker), so a group SIGTERM still ends a running task at once;
its items are claimed again when their lease expires.

While its cluster runs, the command's own process queues the remote batches' poller
every MATHCONV_BATCH_POLL_SECONDS when that is shorter than the poller schedule's
minute (conversions.batchapi.poll_ticker): a Batch API job is picked up again at once
by a cluster that was restarted.

This command shadows django-q2's own (conversions comes before django_q in
INSTALLED_APPS for that reason).
"""

import multiprocessing
import signal

from django_q import cluster
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from conversions.batchapi import poll_ticker


class GroupSignalSentinel(cluster.Sentinel):
    def __init__(self, *args, start: bool = True, **kwargs):
        super().__init__(*args, start=False, **kwargs)  # sets SIGTERM to the default
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if start:
            self.start()


class Command(DjangoQClusterCommand):
    help = DjangoQClusterCommand.help + " It stops cleanly on SIGTERM to its process group."

    def handle(self, *args, **options):
        # Cluster.start() looks the sentinel class up in its module when it starts it.
        cluster.Sentinel = GroupSignalSentinel
        super().handle(*args, **options)
        # The cluster's sentinel is this process's child until the cluster stops (a
        # signal's handler stops it here, or it dies); --run-once stopped it already.
        poll_ticker(alive=lambda: bool(multiprocessing.active_children()))
