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

This command shadows django-q2's own (conversions comes before django_q in
INSTALLED_APPS for that reason).
"""

import signal

from django_q import cluster
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand


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
