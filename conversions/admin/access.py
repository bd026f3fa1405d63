"""Permission checks and response headers shared by the custom admin views.

`admin_site.admin_view` only lets active staff in (and sends everyone else to the
login page); what a staff member may do is checked here, in each view.
"""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied

RUN_JOBS = "conversions.run_job"
VIEW_JOBS = "conversions.view_job"
VIEW_ITEMS = "conversions.view_item"
REVIEW_ITEMS = "conversions.review_item"

# The custom pages only load their own static files; a payload that slipped through
# sanitising would still find no inline script or foreign origin allowed to run.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # MathLive styles its shadow DOM inline
        "img-src 'self' data:",
        "font-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def require_perm(request, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


def with_csp(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        response = view(*args, **kwargs)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return wrapped
