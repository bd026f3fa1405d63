import gc

from django.apps import AppConfig
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


def freeze_loaded_objects() -> None:
    gc.collect()
    gc.freeze()
