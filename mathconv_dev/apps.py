from django.apps import AppConfig


class MathconvDevConfig(AppConfig):
    name = "mathconv_dev"
    verbose_name = "mathconv development tools"
