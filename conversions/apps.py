from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversions"
    verbose_name = _("Conversions")

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(warm_worker, dispatch_uid="conversions.warm_worker")


def warm_worker(sender, proc_name: str = "", **kwargs) -> None:
    """A new django-q2 worker process loads the engine and its TLS settings (the CA
    bundle, ~40 ms of CPU) before its first task, not at the start of a job's clock."""
    from conversions import tasks  # noqa: F401 - imported for its side effect
    from conversions.engine import runner

    runner.warm_up()
