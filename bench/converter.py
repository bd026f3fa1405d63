#!/usr/bin/env python
"""Converter benchmark: speed, judged quality and MathLive acceptance on the dev corpus.

Prints, measured in this run:
- formulas/s on one core over the whole corpus, parsing included (CPU time of this
  process, best of --repeat passes, so other load on the machine does not count);
- the share judged equivalent by ../shared/tools/judge on the reference_valid subset and on
  the whole corpus (pandoc 3.9: 84.3 % and 65.2 %);
- the share of outputs MathLive accepts (mathlive_check.mjs), and how many formulas the
  converter refused (ConversionError), by reason;
- how often validate() passes the outputs the judge rates equivalent, and different;
- the accounting check (accounting.account: does the LaTeX draw every character, fence,
  accent and line break of its MathML?) on every output: outputs that lose content must be 0,
  and its speed;
- the producers' corpora (tests/producers/*.jsonl: MathType, Wiris, Word, HWP, MathJax,
  LibreOffice, Google Docs, GeoGebra): judged equivalent per producer, MathLive acceptance,
  losses. MathJax cannot draw content MathML, so GeoGebra's cases are judged against their
  hand-written reference LaTeX drawn as MathML by latex2mathml.

    .venv/bin/python bench/converter.py            # or: make bench-converter
    .venv/bin/python bench/converter.py --no-judge # speed and refusals only

The candidates go to var/bench/converter-candidates.jsonl, the judge's verdicts to
var/bench/converter-judged-*.jsonl. The judge needs node 20 and its node_modules; when its
folder is read-only, it is copied to var/bench/judge and installed there (npm ci).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from latex2mathml.converter import convert as latex_to_mathml  # noqa: E402

from conversions.converters import ConversionError, mathml_to_latex, validate  # noqa: E402
from conversions.converters.accounting import account  # noqa: E402

OUT = ROOT / "var" / "bench"
SHARED = ROOT.parent / "shared"
# The dev corpus holds four texmath tables of 320-510 kB; the production limit
# (MATHCONV_MAX_MATHML_BYTES, 200 kB) would refuse them unread, so the benchmark raises it
# to convert every formula.
MAX_BYTES = 1_000_000
PRODUCERS = ROOT / "tests" / "producers"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=SHARED / "corpus" / "mathml_dev.jsonl",
        help="JSON lines with id, mathml and reference_valid (default: the shared dev corpus).",
    )
    parser.add_argument(
        "--judge",
        type=Path,
        default=Path(os.environ.get("MATHCONV_JUDGE_DIR", SHARED / "tools" / "judge")),
        help="The judge folder (judge.mjs, mathlive_check.mjs); env MATHCONV_JUDGE_DIR.",
    )
    parser.add_argument("--repeat", type=int, default=3, help="Timed passes; the best counts.")
    parser.add_argument("--no-judge", action="store_true", help="Skip the node tools.")
    parser.add_argument(
        "--producers",
        type=Path,
        default=PRODUCERS,
        help="Folder of the producers' corpora (*.jsonl: id, producer, mathml, reference_latex).",
    )
    return parser.parse_args()


def convert_all(rows: list[dict]) -> tuple[list[dict], collections.Counter]:
    candidates = []
    refused: collections.Counter = collections.Counter()
    for row in rows:
        try:
            latex, error = mathml_to_latex(row["mathml"], max_bytes=MAX_BYTES), None
        except ConversionError as exc:
            latex, error = None, str(exc)
            refused[re.sub(r"U\+[0-9A-F]+|line \d+, column \d+", "…", error)[:90]] += 1
        candidates.append({"id": row["id"], "latex": latex, "error": error})
    return candidates, refused


def timed_passes(rows: list[dict], repeat: int) -> tuple[float, float]:
    """(best CPU seconds, wall seconds of that pass) to convert every formula once."""
    best = (float("inf"), 0.0)
    mathml = [row["mathml"] for row in rows]
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        for text in mathml:
            with contextlib.suppress(ConversionError):
                mathml_to_latex(text, max_bytes=MAX_BYTES)
        best = min(best, (time.process_time() - cpu, time.perf_counter() - wall))
    return best


def ready_judge(judge: Path) -> Path:
    """A judge folder with node_modules installed (a copy under var/ if needed)."""
    if (judge / "node_modules").is_dir():
        return judge
    copy = OUT / "judge"
    if not (copy / "node_modules").is_dir():
        if os.access(judge, os.W_OK):
            copy = judge
        else:
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(judge, copy, ignore=shutil.ignore_patterns("node_modules"))
            for path in copy.rglob("*"):
                path.chmod(path.stat().st_mode | 0o200)
            copy.chmod(copy.stat().st_mode | 0o200)
        print(f"installing the judge's node packages in {copy} (npm ci) ...", flush=True)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=copy, check=True
        )
    return copy


def run_node(judge: Path, *args: str) -> str:
    done = subprocess.run(["node", *args], cwd=judge, capture_output=True, text=True, check=True)
    return done.stdout


def summary_line(output: str, label: str) -> str:
    match = re.search(rf"^{label}: .*$", output, re.MULTILINE)
    return match.group(0) if match else f"{label}: (no summary line)"


def verdict_counts(path: Path) -> str:
    counts = collections.Counter(json.loads(line)["verdict"] for line in path.open())
    return " ".join(f"{verdict}={count}" for verdict, count in counts.most_common())


def main() -> None:
    args = parse_args()
    rows = [json.loads(line) for line in args.corpus.open(encoding="utf-8") if line.strip()]
    OUT.mkdir(parents=True, exist_ok=True)

    candidates, refused = convert_all(rows)
    cpu, wall = timed_passes(rows, args.repeat)
    path = OUT / "converter-candidates.jsonl"
    with path.open("w", encoding="utf-8") as fp:
        for candidate in candidates:
            fp.write(json.dumps(candidate, ensure_ascii=False) + "\n")
    converted = sum(1 for c in candidates if c["latex"] is not None)

    valid = sum(1 for row in rows if row.get("reference_valid"))
    print(f"corpus: {args.corpus} ({len(rows)} formulas, {valid} reference_valid)")
    print(
        f"speed: {len(rows) / cpu:,.0f} formulas/s on one core (CPU time, best of {args.repeat}; "
        f"parsing included; that pass took {wall:.2f} s wall clock)"
    )
    print(f"converted: {converted}/{len(rows)}; refused (ConversionError): {len(rows) - converted}")
    for reason, count in refused.most_common():
        print(f"  {count:4d}  {reason}")
    print(f"candidates: {path.relative_to(ROOT)}")
    print(accounting_report(rows, candidates))
    producer_rows = [
        json.loads(line)
        for corpus in sorted(args.producers.glob("*.jsonl"))
        for line in corpus.open(encoding="utf-8")
        if line.strip()
    ]
    producer_candidates, _ = convert_all(producer_rows)
    producer_path = OUT / "producers-candidates.jsonl"
    with producer_path.open("w", encoding="utf-8") as fp:
        for candidate in producer_candidates:
            fp.write(json.dumps(candidate, ensure_ascii=False) + "\n")
    print(f"producers' corpora ({len(producer_rows)} formulas): {producer_path.relative_to(ROOT)}")
    print("  " + accounting_report(producer_rows, producer_candidates))
    if args.no_judge:
        return

    judge = ready_judge(args.judge)
    corpus = str(args.corpus.resolve())
    valid_out = OUT / "converter-judged-valid.jsonl"
    all_out = OUT / "converter-judged-all.jsonl"
    valid = run_node(
        judge,
        "judge.mjs",
        corpus,
        str(path),
        "--filter",
        "reference_valid=true",
        "--quiet",
        "--out",
        str(valid_out),
    )
    whole = run_node(judge, "judge.mjs", corpus, str(path), "--quiet", "--out", str(all_out))
    accepted = run_node(judge, "mathlive_check.mjs", str(path), "--skip-empty", "--quiet")
    print(f"judge, reference_valid subset: {summary_line(valid, 'equivalent')}")
    print(f"    verdicts: {verdict_counts(valid_out)}")
    print(f"judge, whole corpus: {summary_line(whole, 'equivalent')}")
    print(f"    verdicts: {verdict_counts(all_out)}")
    print(
        f"MathLive check of the {converted} outputs: {summary_line(accepted, 'mathlive-accepted')}"
    )
    print(validator_agreement(rows, candidates, all_out))
    print(producers_report(judge, producer_rows, producer_path))


def accounting_report(rows: list[dict], candidates: list[dict]) -> str:
    """How many outputs lose content by the accounting check, and its speed (CPU time)."""
    mathml = {row["id"]: row["mathml"] for row in rows}
    lossy: list[str] = []
    checked = 0
    cpu = time.process_time()
    for candidate in candidates:
        if candidate["latex"] is None or len(mathml[candidate["id"]]) > 200_000:
            continue  # the 320-510 kB texmath tables exceed the parser's production limit
        checked += 1
        if account(mathml[candidate["id"]], candidate["latex"]):
            lossy.append(candidate["id"])
    cpu = time.process_time() - cpu
    shown = (": " + ", ".join(lossy[:5])) if lossy else ""
    return (
        f"accounting: {len(lossy)}/{checked} outputs lose content{shown} "
        f"({checked / max(cpu, 1e-9):,.0f} checks/s on one core)"
    )


def producers_report(judge: Path, rows: list[dict], candidates: Path) -> str:
    """Judged equivalent and MathLive-accepted, per producer."""
    cases = OUT / "producers-cases.jsonl"
    with cases.open("w", encoding="utf-8") as fp:
        for row in rows:
            if "<apply" in row["mathml"] or row["producer"] == "geogebra":
                # content MathML: MathJax cannot draw it; its reference, drawn, stands in
                row = {**row, "mathml": latex_to_mathml(row["reference_latex"])}
            fp.write(json.dumps(row, ensure_ascii=False) + "\n")
    judged = OUT / "producers-judged.jsonl"
    run_node(judge, "judge.mjs", str(cases), str(candidates), "--quiet", "--out", str(judged))
    accepted = run_node(judge, "mathlive_check.mjs", str(candidates), "--skip-empty")
    producer_of = {row["id"]: row["producer"] for row in rows}
    good: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    for line in judged.open():
        verdict = json.loads(line)
        total[producer_of[verdict["id"]]] += 1
        good[producer_of[verdict["id"]]] += verdict["verdict"] in ("identical", "equivalent")
    lines = ["producers, judged equivalent:"]
    for producer in sorted(total):
        share = 100 * good[producer] / total[producer]
        lines.append(f"  {producer:12s} {good[producer]:3d}/{total[producer]:3d} ({share:.1f}%)")
    lines.append(f"  {summary_line(accepted, 'mathlive-accepted')}")
    return "\n".join(lines)


def validator_agreement(rows: list[dict], candidates: list[dict], judged: Path) -> str:
    """How often validate() agrees with the judge on the converter's own outputs."""
    verdicts = {json.loads(line)["id"]: json.loads(line)["verdict"] for line in judged.open()}
    mathml = {row["id"]: row["mathml"] for row in rows}
    passed = {True: [0, 0], False: [0, 0]}  # judged equivalent -> [validated ok, total]
    for candidate in candidates:
        verdict = verdicts.get(candidate["id"])
        if candidate["latex"] is None or verdict not in ("identical", "equivalent", "different"):
            continue
        good = verdict != "different"
        passed[good][0] += validate(mathml[candidate["id"]], candidate["latex"]).ok
        passed[good][1] += 1
    (ok_good, good), (ok_bad, bad) = passed[True], passed[False]
    return (
        f"validator: passes {ok_good}/{good} outputs the judge rates equivalent "
        f"({100 * ok_good / max(good, 1):.1f}%) and {ok_bad}/{bad} it rates different "
        "(the round trip compares symbols and structure, not positions)"
    )


if __name__ == "__main__":
    main()
