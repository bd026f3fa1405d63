"""Where the admin keeps an uploaded import file between its preview and its confirmation.

django-import-export writes the upload to a temporary storage at the preview and reads
it again when the user confirms (IMPORT_EXPORT_TMP_STORAGE_CLASS). The library's
default, a file in the web process's /tmp, breaks with several web processes (or
machines) behind one site, trusts the file name the browser posts back, and leaves
every rejected preview's upload behind. UploadStorage keeps uploads in one folder that
all web processes share (MATHCONV_UPLOAD_DIR, under var/ by default; point it at a
shared disk for several machines), accepts only names it made itself, hands each upload
to exactly one confirmation (the file is claimed by an atomic rename, so a second click
or a stale tab finds it gone), and removes uploads older than
MATHCONV_UPLOAD_MAX_AGE_SECONDS whenever a new one is saved.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from contextlib import suppress
from pathlib import Path

from django.conf import settings
from import_export.tmp_storages import BaseStorage

NAME = re.compile(r"^[0-9a-f]{32}$")
CLAIMED = ".claimed"


class UploadGone(Exception):
    """The upload was imported already, has expired, or was never ours."""


def upload_dir() -> Path:
    folder = Path(settings.MATHCONV_UPLOAD_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def uploads_sweep(*, max_age: float | None = None, now: float | None = None) -> int:
    """Remove uploads (and claims left by a crashed confirmation) older than max_age seconds.

    Returns how many files were removed. Files not named by UploadStorage are left alone.
    """
    max_age = settings.MATHCONV_UPLOAD_MAX_AGE_SECONDS if max_age is None else max_age
    cutoff = (time.time() if now is None else now) - max_age
    removed = 0
    for path in upload_dir().iterdir():
        if not NAME.match(path.name.removesuffix(CLAIMED)):
            continue
        with suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


class UploadStorage(BaseStorage):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.read_mode = "rb"  # our import formats read bytes and detect the encoding
        self._saved_here = False

    def save(self, data: bytes | str) -> None:
        uploads_sweep()
        self.name = uuid.uuid4().hex
        path = upload_dir() / self.name
        partial = path.with_name(f"{self.name}.partial")
        partial.write_bytes(data.encode() if isinstance(data, str) else data)
        partial.replace(path)  # never seen half written by a confirmation
        self._saved_here = True

    def read(self) -> bytes:
        """The upload's bytes. A confirmation (a storage opened by name) takes them once."""
        if not NAME.match(self.name or ""):
            raise UploadGone(self.name)
        path = upload_dir() / self.name
        if self._saved_here:  # the preview, in the request that saved it
            return path.read_bytes()
        claimed = path.with_name(self.name + CLAIMED)
        try:
            path.rename(claimed)  # atomic: of two confirmations, one wins
        except FileNotFoundError as exc:
            raise UploadGone(self.name) from exc
        try:
            return claimed.read_bytes()
        finally:
            claimed.unlink()

    def remove(self) -> None:
        if NAME.match(self.name or ""):
            with suppress(FileNotFoundError):
                os.remove(upload_dir() / self.name)
