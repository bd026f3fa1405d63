import gc
from collections.abc import Iterator
from contextlib import contextmanager

from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class ConversionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversions"
    verbose_name = _("Conversions")

    def ready(self) -> None:
        # Imported here, not at the top: both need the app registry (django_q.signals
        # imports django-q's models, conversions.tasks ours), which is ready only now.
        from django_q.signals import post_spawn

        from conversions.tasks import warm_worker

        post_spawn.connect(warm_worker, dispatch_uid="conversions.warm_worker")
        post_migrate.connect(create_cache_tables, sender=self, dispatch_uid="conversions.cache")


def create_cache_tables(sender, using: str = "default", **kwargs) -> None:
    """Create the database cache tables (settings.CACHES) after `migrate`, if missing.

    django-q2 keeps its cluster stats in a cache every process shares; without Redis that
    is a database table, which `migrate` therefore creates like any other.
    """
    call_command("createcachetable", database=using, verbosity=0)


def freeze_loaded_objects() -> None:
    gc.collect()
    gc.freeze()


@contextmanager
def loaded_objects_frozen() -> Iterator[None]:
    """The objects loaded so far (Django and the app, some 170k) out of the garbage
    collector's sight for the block, as freeze_loaded_objects does for a worker.

    A long loop that allocates many objects triggers full collections, and each walks
    every tracked object: a 100,000-row import spent about a fifth of its time there.
    Unfrozen at the end, so a process that goes on (a test run) collects them again.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
