#!/usr/bin/env python
"""Validator benchmark: does validate() catch wrong answers, and pass right ones?

Right answers: the dev corpus's references that the judge accepts (`reference_valid`)
and MathLive accepts (mathlive_check.mjs; the validator refuses what MathLive refuses,
by design). Wrong answers: those references changed in one way an LLM gets a formula
wrong (a digit, a letter, an operator, a relation, a swapped fraction, a lost script or
prime, a dropped root or term, a wrong fence, a letter made upright, italic, bold or
\\text); only the changes the judge finds drawn differently count, the others are dropped.

Prints, measured in this run: the share of wrong answers caught, overall and by kind,
and the share of right answers refused (false alarms), with the commonest reasons.

    .venv/bin/python bench/validator.py                # or: make bench-validator
    .venv/bin/python bench/validator.py --per-kind 400 --seed 2

Judge verdicts are cached in var/bench/validator-judged.jsonl and MathLive's in
var/bench/validator-mathlive.jsonl, so a rerun only judges what it has not seen.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conversions.converters import ConversionError, mathml_to_latex, validate  # noqa: E402
from conversions.converters.commands import forbidden_commands  # noqa: E402

OUT = ROOT / "var" / "bench"
SHARED = ROOT.parent / "shared"
MAX_CHARS = 4000  # the texmath character tables take MathLive's check 30 s each

# ---------------------------------------------------------------- mutations


def _math_positions(latex: str) -> list[tuple[int, str]]:
    """(index, character) of characters outside command names and non-math arguments."""
    out = []
    i = 0
    raw = re.compile(
        r"\\(?:begin|end|textcolor|color|colorbox|hspace|kern|mkern|rule|bbox|operatorname"
        r"|mathrm|text|textrm|textbf|textit|mathbf|mathit|mathsf|mathtt|mathcal|mathbb"
        r"|mathfrak|boldsymbol|mbox|array)\b\*?(?:\[[^\]]*\])?\{[^{}]*\}"
    )
    while i < len(latex):
        if latex[i] == "\\":
            match = raw.match(latex, i)
            if match:
                i = match.end()
                continue
            j = i + 1
            while j < len(latex) and latex[j].isalpha():
                j += 1
            i = max(j, i + 2)
            continue
        out.append((i, latex[i]))
        i += 1
    return out


def _replace_at(latex: str, i: int, old: str, new: str) -> str:
    return latex[:i] + new + latex[i + len(old) :]


def _pick(rng: random.Random, spots: list) -> object | None:
    return rng.choice(spots) if spots else None


def digit(latex: str, rng: random.Random) -> str | None:
    spot = _pick(rng, [(i, c) for i, c in _math_positions(latex) if c.isdigit()])
    if spot is None:
        return None
    i, c = spot
    return _replace_at(latex, i, c, rng.choice([d for d in "0123456789" if d != c]))


def letter(latex: str, rng: random.Random) -> str | None:
    spot = _pick(rng, [(i, c) for i, c in _math_positions(latex) if c.isascii() and c.isalpha()])
    if spot is None:
        return None
    i, c = spot
    pool = "abcdxyzmnpqrtuv" if c.islower() else "ABCDXYZMNPQRT"
    return _replace_at(latex, i, c, rng.choice([x for x in pool if x != c]))


def _swap_token(latex: str, rng: random.Random, tokens: list[str]) -> str | None:
    pattern = re.compile(
        "|".join(
            re.escape(t) + (r"(?![A-Za-z])" if t[-1].isalpha() else "")
            for t in sorted(tokens, key=len, reverse=True)
        )
    )
    allowed = {i for i, _c in _math_positions(latex)}
    spots = [m for m in pattern.finditer(latex) if m.start() in allowed or latex[m.start()] == "\\"]
    match = _pick(rng, spots)
    if match is None:
        return None
    new = rng.choice([t for t in tokens if t != match.group(0)])
    return latex[: match.start()] + new + latex[match.end() :]


def operator(latex: str, rng: random.Random) -> str | None:
    return _swap_token(latex, rng, ["+", "-", "\\times", "\\cdot", "\\pm", "\\div"])


def relation(latex: str, rng: random.Random) -> str | None:
    return _swap_token(latex, rng, ["=", "<", ">", "\\le", "\\ge", "\\ne", "\\approx", "\\equiv"])


def _group_end(latex: str, i: int) -> int | None:
    if i >= len(latex) or latex[i] != "{":
        return None
    depth = 0
    while i < len(latex):
        if latex[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(latex[i], 0)
        i += 1
        if depth == 0:
            return i
    return None


def swapped_fraction(latex: str, rng: random.Random) -> str | None:
    spots = []
    for m in re.finditer(r"\\[dt]?frac\s*(?=\{)", latex):
        a_end = _group_end(latex, m.end())
        b_end = _group_end(latex, a_end) if a_end else None
        if b_end:
            spots.append((m.end(), a_end, b_end))
    spot = _pick(rng, spots)
    if spot is None:
        return None
    start, middle, end = spot
    return latex[:start] + latex[middle:end] + latex[start:middle] + latex[end:]


def lost_script(latex: str, rng: random.Random) -> str | None:
    allowed = {i for i, _c in _math_positions(latex)}
    spots = []
    for i in allowed:
        if latex[i] in "^_":
            j = i + 1
            while j < len(latex) and latex[j] == " ":
                j += 1
            end = _group_end(latex, j) if j < len(latex) and latex[j] == "{" else j + 1
            if end and latex[j : j + 1] not in ("", "\\"):
                spots.append((i, end))
    spot = _pick(rng, spots)
    return None if spot is None else latex[: spot[0]] + latex[spot[1] :]


def lost_prime(latex: str, rng: random.Random) -> str | None:
    spots = [m for m in re.finditer(r"\^\{?\\prime\}?|'", latex)]
    allowed = {i for i, _c in _math_positions(latex)} | {
        m.start() for m in spots if latex[m.start()] == "^"
    }
    spots = [m for m in spots if m.start() in allowed]
    m = _pick(rng, spots)
    return None if m is None else latex[: m.start()] + latex[m.end() :]


def dropped_root(latex: str, rng: random.Random) -> str | None:
    m = _pick(rng, list(re.finditer(r"\\sqrt\s*(?:\[[^\]]*\])?(?=\{)", latex)))
    return None if m is None else latex[: m.start()] + latex[m.end() :]


def dropped_term(latex: str, rng: random.Random) -> str | None:
    allowed = {i for i, _c in _math_positions(latex)}
    spots = []
    for m in re.finditer(r"[+-]\s*(\{|\\[A-Za-z]+|[A-Za-z0-9]+)", latex):
        if m.start() not in allowed:
            continue
        end = _group_end(latex, m.start(1)) if m.group(1) == "{" else m.end()
        if end:
            spots.append((m.start(), end))
    spot = _pick(rng, spots)
    return None if spot is None else latex[: spot[0]] + latex[spot[1] :]


def wrong_fence(latex: str, rng: random.Random) -> str | None:
    pairs = {"(": ("[", "]", ")"), "[": ("(", ")", "]"), "\\{": ("(", ")", "\\}")}
    allowed = {i for i, _c in _math_positions(latex)}
    spots = [i for i in allowed if latex[i] in "(["] + [
        m.start() for m in re.finditer(r"\\\{", latex)
    ]
    i = _pick(rng, spots)
    if i is None:
        return None
    opener = "\\{" if latex.startswith("\\{", i) else latex[i]
    new_open, new_close, close = pairs[opener]
    depth = 0
    j = i
    while j < len(latex):
        if latex.startswith(opener, j):
            depth += 1
        elif latex.startswith(close, j):
            depth -= 1
            if depth == 0:
                return (
                    latex[:i]
                    + new_open
                    + latex[i + len(opener) : j]
                    + new_close
                    + latex[j + len(close) :]
                )
        j += 1
    return None


def _wrap_letter(latex: str, rng: random.Random, command: str) -> str | None:
    spot = _pick(rng, [(i, c) for i, c in _math_positions(latex) if c.isascii() and c.isalpha()])
    if spot is None:
        return None
    i, c = spot
    return latex[:i] + command + "{" + c + "}" + latex[i + 1 :]


def style_upright(latex: str, rng: random.Random) -> str | None:
    return _wrap_letter(latex, rng, "\\mathrm")


def style_bold(latex: str, rng: random.Random) -> str | None:
    return _wrap_letter(latex, rng, rng.choice(["\\mathbf", "\\boldsymbol"]))


def style_text(latex: str, rng: random.Random) -> str | None:
    return _wrap_letter(latex, rng, "\\text")


def style_italic(latex: str, rng: random.Random) -> str | None:
    """Upright text made italic: \\mathrm{..}, \\text{..} or \\sin written as plain letters."""
    spots = list(re.finditer(r"\\(?:mathrm|text|textrm|operatorname)\{([A-Za-z]+)\}", latex))
    spots += list(re.finditer(r"\\(sin|cos|tan|log|ln|exp|lim|max|min|det)(?![A-Za-z])", latex))
    m = _pick(rng, spots)
    return None if m is None else latex[: m.start()] + "{" + m.group(1) + "}" + latex[m.end() :]


MUTATIONS: dict[str, Callable[[str, random.Random], str | None]] = {
    "digit": digit,
    "letter": letter,
    "operator": operator,
    "relation": relation,
    "swapped fraction": swapped_fraction,
    "lost script": lost_script,
    "lost prime": lost_prime,
    "dropped root": dropped_root,
    "dropped term": dropped_term,
    "wrong fence": wrong_fence,
    "style: upright": style_upright,
    "style: italic": style_italic,
    "style: bold": style_bold,
    "style: \\text": style_text,
}

# ---------------------------------------------------------------- the node tools


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


def _load_cache(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {row["key"]: row for row in map(json.loads, path.open(encoding="utf-8"))}


def judge(judge_dir: Path, pairs: list[tuple[str, str]]) -> list[str]:
    """The judge's verdict for each (mathml, latex), through one warm `--serve` process."""
    cache_path = OUT / "validator-judged.jsonl"
    cache = _load_cache(cache_path)
    todo = [(m, latex) for m, latex in pairs if _key(m, latex) not in cache]
    if todo:
        print(f"judging {len(todo)} answers ...", flush=True)
        lines = "".join(json.dumps({"mathml": m, "latex": latex}) + "\n" for m, latex in todo)
        done = subprocess.run(
            ["node", "judge.mjs", "--serve"],
            cwd=judge_dir,
            input=lines,
            capture_output=True,
            text=True,
            check=True,
        )
        with cache_path.open("a", encoding="utf-8") as out:
            for (m, latex), line in zip(todo, done.stdout.splitlines(), strict=True):
                row = {"key": _key(m, latex), "verdict": json.loads(line)["verdict"]}
                cache[row["key"]] = row
                out.write(json.dumps(row) + "\n")
    return [cache[_key(m, latex)]["verdict"] for m, latex in pairs]


def mathlive_accepts(judge_dir: Path, latexes: list[str]) -> list[bool]:
    cache_path = OUT / "validator-mathlive.jsonl"
    cache = _load_cache(cache_path)
    todo = sorted({latex for latex in latexes if _key(latex) not in cache})
    if todo:
        print(f"MathLive checks {len(todo)} references ...", flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for n, latex in enumerate(todo):
                f.write(json.dumps({"id": str(n), "latex": latex}) + "\n")
        done = subprocess.run(
            ["node", "mathlive_check.mjs", f.name], cwd=judge_dir, capture_output=True, text=True
        )
        os.unlink(f.name)
        verdicts = dict(line.split("\t")[:2] for line in done.stdout.splitlines() if "\t" in line)
        with cache_path.open("a", encoding="utf-8") as out:
            for n, latex in enumerate(todo):
                row = {"key": _key(latex), "ok": verdicts.get(str(n)) == "ok"}
                cache[row["key"]] = row
                out.write(json.dumps(row) + "\n")
    return [cache[_key(latex)]["ok"] for latex in latexes]


# ---------------------------------------------------------------- the run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=SHARED / "corpus" / "mathml_dev.jsonl",
        help="JSON lines with id, mathml, reference_latex and reference_valid.",
    )
    parser.add_argument(
        "--judge",
        type=Path,
        default=Path(os.environ.get("MATHCONV_JUDGE_DIR", SHARED / "tools" / "judge")),
        help="The judge folder (judge.mjs, mathlive_check.mjs); env MATHCONV_JUDGE_DIR.",
    )
    parser.add_argument("--per-kind", type=int, default=250, help="Mutations tried per kind.")
    parser.add_argument("--seed", type=int, default=1, help="Seed of the mutations.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in args.corpus.open(encoding="utf-8")]
    rows = [
        r
        for r in rows
        if r.get("reference_valid") and r.get("reference_latex") and len(r["mathml"]) < MAX_CHARS
    ]
    accepted = mathlive_accepts(args.judge, [r["reference_latex"] for r in rows])
    mathlive_ok = [r for r, ok in zip(rows, accepted, strict=True) if ok]
    # Links, scripts and \def are refused from any source by design (DESIGN invariant 11).
    right = [r for r in mathlive_ok if not forbidden_commands(r["reference_latex"])]

    false_alarms = [r for r in right if not validate(r["mathml"], r["reference_latex"]).ok]
    rng = random.Random(args.seed)
    tried: list[tuple[str, dict, str]] = []
    for kind, mutate in MUTATIONS.items():
        order = right[:]
        rng.shuffle(order)
        count = 0
        for row in order:
            wrong = mutate(row["reference_latex"], rng)
            if wrong and wrong != row["reference_latex"]:
                tried.append((kind, row, wrong))
                count += 1
                if count >= args.per_kind:
                    break
    verdicts = judge(args.judge, [(row["mathml"], wrong) for _kind, row, wrong in tried])

    caught: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    dropped = collections.Counter()
    missed: dict[str, list[str]] = collections.defaultdict(list)
    for (kind, row, wrong), verdict in zip(tried, verdicts, strict=True):
        if verdict != "different":
            dropped[kind] += 1
            continue
        total[kind] += 1
        if not validate(row["mathml"], wrong).ok:
            caught[kind] += 1
        else:
            missed[kind].append(f"{row['id']}: {wrong[:70]}")

    print(
        f"right answers: {len(right)} references the judge and MathLive accept "
        f"({len(mathlive_ok) - len(right)} with \\unicode or \\def left out, refused by design)"
    )
    all_caught, all_total = sum(caught.values()), sum(total.values())
    print(
        f"wrong answers caught: {all_caught}/{all_total} "
        f"({100 * all_caught / max(all_total, 1):.1f} %)"
    )
    for kind in MUTATIONS:
        share = 100 * caught[kind] / max(total[kind], 1)
        print(
            f"  {kind:18} {caught[kind]:4}/{total[kind]:<4} ({share:5.1f} %)   "
            f"judged the same, dropped: {dropped[kind]}"
        )
    share = 100 * len(false_alarms) / max(len(right), 1)
    print(f"false alarms on right answers: {len(false_alarms)}/{len(right)} ({share:.1f} %)")
    reasons = collections.Counter()
    for row in false_alarms:
        check = validate(row["mathml"], row["reference_latex"])
        reasons[re.sub(r"“[^”]*”", "“…”", (check.reasons or ["(score)"])[0])[:70]] += 1
    for reason, n in reasons.most_common(8):
        print(f"  {n:4}  {reason}")
    converter_false_alarms(args.judge, rows)
    for kind, examples in missed.items():
        for example in examples[:12]:
            print(f"  missed {kind}: {example}")


def converter_false_alarms(judge_dir: Path, rows: list[dict]) -> None:
    """False alarms on the rules converter's own outputs that the judge accepts."""
    pairs = []
    for row in rows:
        try:
            pairs.append((row, mathml_to_latex(row["mathml"], max_bytes=1_000_000)))
        except ConversionError:
            continue
    verdicts = judge(judge_dir, [(row["mathml"], latex) for row, latex in pairs])
    right = [(r, latex) for (r, latex), v in zip(pairs, verdicts, strict=True) if v in _SAME]
    refused = [r["id"] for r, latex in right if not validate(r["mathml"], latex).ok]
    share = 100 * len(refused) / max(len(right), 1)
    print(
        f"false alarms on the converter's outputs the judge accepts: "
        f"{len(refused)}/{len(right)} ({share:.1f} %)"
    )


_SAME = ("identical", "equivalent")


if __name__ == "__main__":
    main()
