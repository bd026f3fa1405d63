"""Plain-text rendering of job stats for the CLI (convert, job, monitor, demo)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from conversions.exporting import export_dir
from conversions.joblog import log_path


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_bar(done: int, total: int, width: int = 30) -> str:
    share = done / total if total else 1.0
    filled = int(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share * 100:5.1f}% {done}/{total}"


def progress_line(stats: dict) -> str:
    return (
        f"{progress_bar(stats['done'], stats['total'])}  {stats['status']}  "
        f"{stats['throughput_per_min']:.0f}/min  ETA {_duration(stats['eta_s'])}"
    )


def format_stats(stats: dict, *, exports: bool = True) -> str:
    counts = stats["counts"]
    order = ["succeeded", "needs_review", "failed", "cancelled", "skipped", "running", "pending"]
    count_text = ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in order if counts.get(s))
    latency = stats["latency_ms"]
    cache = stats["cache"]
    lines = [
        f"Job {stats['job']} ({stats['name']}): {stats['status']}"
        f"  [backend {stats['backend']}{', model ' + stats['model'] if stats['model'] else ''}]",
        f"  items       {stats['done']} done of {stats['total']}: {count_text or 'none'}",
        f"  success     {stats['success']['text']}"
        + (
            f"; {stats['success']['skipped']} skipped (left out)"
            if stats["success"]["skipped"]
            else ""
        ),
        "  routes      "
        + (", ".join(f"{k} {v}" for k, v in sorted(stats["routes"].items())) or "-"),
        f"  latency     mean {latency['mean'] if latency['mean'] is not None else '-'} ms, "
        f"p50 {latency['p50'] if latency['p50'] is not None else '-'} ms, "
        f"p95 {latency['p95'] if latency['p95'] is not None else '-'} ms",
        f"  throughput  {stats['throughput_per_min']:.0f} items/min over "
        f"{_duration(stats['elapsed_s'])}, ETA {_duration(stats['eta_s'])}",
        f"  tokens      {stats['tokens_in']} in / {stats['tokens_out']} out; "
        f"API calls {stats['api_calls']} ({stats['api_calls_per_item'] or 0:.2f} per item), "
        f"sent {stats['requests_sent']}, retries {stats['retries']}",
        f"  cost        ${stats['cost_usd']:.6f}; cache hits {cache['hits']} "
        f"({_pct(cache['hit_rate'])}) saved ${cache['saved_usd']:.6f}"
        + (
            f"; saved vs all-LLM ${stats['saved_vs_all_llm_usd']:.6f}"
            if stats["saved_vs_all_llm_usd"] is not None
            else ""
        ),
    ]
    batch = stats.get("batch_api")
    if batch:
        lines.append("  " + batch_api_line(batch))
        for row in batch["batches"]:
            lines.append(
                f"    {row['seq']:>3} {row['remote_id'] or '-'}  {row['state']}"
                f"  {row['completed']}/{row['total']} done, {row['failed']} failed"
                f"  submitted {row['submitted'] or '-'}"
            )
    for category, failure in sorted(stats["failures"].items()):
        samples = " | ".join(s[:120] for s in failure["samples"][:3])
        lines.append(f"  failures    {category} {failure['count']}: {samples}")
    if stats["error"]:
        lines.append(f"  error       {stats['error']}")
    if exports:
        lines.append(f"  log         {log_path(stats['job'])}")
        lines.append(f"  exports     {export_dir(job_id=stats['job'])}")
    return "\n".join(lines)


def batch_api_line(batch: dict) -> str:
    """A Batch API job's remote batches and what they saved against realtime."""
    realtime = batch["realtime_cost_usd"]
    saved = (
        _("realtime price $%(realtime).6f, saved $%(saved).6f")
        % {"realtime": realtime, "saved": batch["saved_vs_realtime_usd"]}
        if realtime is not None
        else _("no realtime price for this model")
    )
    return _("Batch API: %(n)s remote batch(es), %(open)s open; %(saved)s") % {
        "n": len(batch["batches"]),
        "open": batch["open"],
        "saved": saved,
    }
