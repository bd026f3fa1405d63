"""The log of a job: a file per job under settings.MATHCONV_LOG_DIR, plus the console.

Every line names the job, the batch and the item (``-`` where a line is about the job or
a whole batch), so ``grep 'item=Q-123 '`` finds one question's history across retries
and worker restarts. Item lines go to the file only (DEBUG); batch and job lines and
failures also go to the console.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from django.conf import settings

FORMAT = "%(asctime)s %(levelname)s job=%(job)s batch=%(batch)s item=%(item)s %(message)s"


def log_path(job_id: int) -> Path:
    return Path(settings.MATHCONV_LOG_DIR) / f"job-{job_id:06d}.log"


class _FileHandler(logging.FileHandler):
    """Flushes on job and batch lines and failures, not on every item line: a worker
    writes hundreds of item lines a second, and a flush is a system call."""

    def flush(self) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.levelno >= logging.INFO and self.stream:
            self.stream.flush()


class JobLog:
    """Opened by a task for one run on a job; several runs of a job append to one file."""

    def __init__(self, job_id: int, *, console_level: int = logging.INFO) -> None:
        self.job_id = job_id
        self.path = log_path(job_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A unique logger per JobLog: a worker process runs many tasks, and handlers of
        # an earlier run must not write into this one.
        self._logger = logging.getLogger(f"mathconv.job.{job_id}.{id(self)}")
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False
        formatter = logging.Formatter(FORMAT)
        self._file = _FileHandler(self.path, encoding="utf-8")
        self._file.setFormatter(formatter)
        self._file.setLevel(logging.DEBUG)
        self._console = logging.StreamHandler(sys.stderr)
        self._console.setFormatter(formatter)
        self._console.setLevel(console_level)
        self._logger.addHandler(self._file)
        self._logger.addHandler(self._console)

    def close(self) -> None:
        for handler in (self._file, self._console):
            self._logger.removeHandler(handler)
            handler.close()
        logging.Logger.manager.loggerDict.pop(self._logger.name, None)

    def __enter__(self) -> JobLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _log(self, level: int, batch, item, message: str, *args) -> None:
        extra = {"job": self.job_id, "batch": batch if batch else "-", "item": item or "-"}
        self._logger.log(level, message, *args, extra=extra)

    def job(self, message: str, *args, level: int = logging.INFO) -> None:
        self._log(level, None, None, message, *args)

    def batch(self, batch_no: int, message: str, *args, level: int = logging.INFO) -> None:
        self._log(level, batch_no, None, message, *args)

    def item(
        self, batch_no: int, ref: str, message: str, *args, level: int = logging.DEBUG
    ) -> None:
        self._log(level, batch_no, ref, message, *args)

    def adapter(self) -> logging.LoggerAdapter:
        """For code that logs on its own (the engine): its lines name batch and item in
        the message, and land in this job's file and console."""
        return logging.LoggerAdapter(self._logger, {"job": self.job_id, "batch": "-", "item": "-"})

    def exception(self, message: str, *args) -> None:
        self._logger.exception(
            message, *args, extra={"job": self.job_id, "batch": "-", "item": "-"}
        )
