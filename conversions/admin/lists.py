"""Helpers for admin lists over tables with a million rows.

The changelist asks its paginator for a count on every page view; on a huge table that
COUNT(*) costs more than the page itself. CappedCountPaginator counts a slice
(SELECT COUNT(*) FROM (SELECT ... LIMIT CAP+1)), which costs at most CAP index entries
whatever the table size; past CAP the list says "more than CAP" and the reader filters
instead of paging to page 10,000.

Rendering costs too: the stock action checkbox renders a form widget template per row,
which is half the time of a 100-row page. FastActionCheckbox writes the same markup
directly.
"""

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

CAP = 10_000


class CappedCountPaginator(Paginator):
    cap = CAP

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if not isinstance(object_list, QuerySet):
            return len(object_list)
        return object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class FastActionCheckbox:
    """A ModelAdmin mixin: the action checkbox column without a template per row."""

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        # Django's own message, so its translations apply.
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            label,
        )
