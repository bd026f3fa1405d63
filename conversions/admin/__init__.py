"""The admin, one module per area; importing a module registers its ModelAdmins."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from conversions.admin import endpoints, items, jobs, labels, questions, recurring  # noqa: F401

admin.site.site_header = _("mathconv administration")
admin.site.site_title = _("mathconv admin")
admin.site.index_title = _("Question bank, conversion and labeling")
