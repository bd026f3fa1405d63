"""The admin, one module per area; importing a module registers its ModelAdmins."""

from conversions.admin import items, jobs, labels, questions  # noqa: F401
