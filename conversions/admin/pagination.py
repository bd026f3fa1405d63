"""A paginator for tables with a million rows: it counts at most CAP rows.

The admin's changelist asks the paginator for a count on every page view; on a huge
table that COUNT(*) costs more than the page itself. Counting a slice
(SELECT COUNT(*) FROM (SELECT ... LIMIT CAP+1)) costs at most CAP index entries,
whatever the table size. Past CAP the list shows "more than CAP" and the reader
filters instead of paging to page 10,000.
"""

from django.core.paginator import Paginator
from django.utils.functional import cached_property

CAP = 10_000


class CappedCountPaginator(Paginator):
    cap = CAP

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if not hasattr(object_list, "query"):
            return len(object_list)
        return object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap
