"""The log of a job: a file per job under settings.MATHCONV_LOG_DIR, plus the console.

Every line names the job, the batch and the item (``-`` where a line is about the job or
a whole batch), so ``grep 'item=Q-123 '`` finds one question's history across retries
and worker restarts. Item lines go to the file only (DEBUG); batch and job lines and
failures also go to the console.
"""

from __future__ import annotations

import logging
import sys
import time
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


class _Formatter(logging.Formatter):
    """FORMAT's lines, with asctime's date and time made once per second instead of once
    per line (logging.Formatter.formatTime: strftime of localtime, then the msecs)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt or not self.default_msec_format:
            return super().formatTime(record, datefmt)
        second, stamp = self._second  # one tuple: two threads write lines (the engine's)
        if int(record.created) != second:
            second = int(record.created)
            stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, stamp)
        return self.default_msec_format % (stamp, record.msecs)


class _Logger(logging.Logger):
    """FORMAT names no source file, line or function: a line does without the stack walk
    that logging makes for each record to find them (findCaller)."""

    def findCaller(self, stack_info: bool = False, stacklevel: int = 1):
        if stack_info:
            return super().findCaller(stack_info, stacklevel)
        return "(unknown file)", 0, "(unknown function)", None


class JobLog:
    """Opened by a task for one run on a job; several runs of a job append to one file."""

    def __init__(self, job_id: int, *, console_level: int = logging.INFO) -> None:
        self.job_id = job_id
        self.path = log_path(job_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A logger of its own per JobLog, outside logging's registry (getLogger would keep
        # it until close): a worker process runs many tasks, and handlers of an earlier run
        # must not write into this one.
        self._logger = _Logger(f"mathconv.job.{job_id}.{id(self)}", logging.DEBUG)
        self._logger.propagate = False
        formatter = _Formatter(FORMAT)
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
