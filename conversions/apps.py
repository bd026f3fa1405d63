import gc

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class ConversionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversions"
    verbose_name = _("Conversions")

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(warm_worker, dispatch_uid="conversions.warm_worker")
        post_migrate.connect(create_cache_tables, sender=self, dispatch_uid="conversions.cache")


def create_cache_tables(sender, using: str = "default", **kwargs) -> None:
    """Create the database cache tables (settings.CACHES) after `migrate`, if missing.

    django-q2 keeps its cluster stats in a cache every process shares; without Redis that
    is a database table, which `migrate` therefore creates like any other.
    """
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


def warm_worker(sender, proc_name: str = "", **kwargs) -> None:
    """Ready a new django-q2 worker process before its first task.

    It loads the engine and its TLS settings (the CA bundle, ~40 ms of CPU), then moves
    everything loaded so far (Django, the SDK: ~150k objects) out of the garbage
    collector's sight: a full collection scanning them holds the GIL for ~50 ms, which
    the engine's event loop in the other thread would feel as latency on every call in
    flight.
    """
    from conversions import tasks  # noqa: F401 - imported for its side effect
    from conversions.engine import runner

    runner.warm_up()
    freeze_loaded_objects()


def freeze_loaded_objects() -> None:
    gc.collect()
    gc.freeze()
