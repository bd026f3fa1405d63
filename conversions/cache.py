"""The result cache: identical input, same backend, model and prompt -> the earlier result.

Question banks repeat formulas a lot. A key is the SHA-256 of the normalised MathML (the
converter's normalize_mathml: whitespace, attribute order, namespaces and entities do not
split keys) with the job kind, backend, model and prompt version, so a new prompt or
model never reuses an old answer. Only results that passed validation are stored; a hit
costs no API call, and the item records what the original call cost as money saved.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F

from conversions.converters import normalize_mathml
from conversions.models import CacheEntry


@dataclass(frozen=True)
class CachedResult:
    key: str
    latex: str
    validation_score: float | None
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal


def normalized_input(mathml: str) -> str:
    try:
        return normalize_mathml(mathml)
    except Exception:
        # Unparseable input still gets a stable key; it will fail validation anyway.
        return " ".join(mathml.split())


def cache_key(*, kind: str, backend: str, model: str, prompt_version: str, mathml: str) -> str:
    material = "\x1f".join((kind, backend, model, prompt_version, normalized_input(mathml)))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def cache_lookup(*, keys: Iterable[str]) -> dict[str, CachedResult]:
    rows = CacheEntry.objects.filter(key__in=set(keys)).values_list(
        "key", "result_latex", "validation_score", "tokens_in", "tokens_out", "cost_usd"
    )
    return {row[0]: CachedResult(*row) for row in rows}


def cache_store(*, results: Iterable[CachedResult], kind: str = "convert") -> None:
    """Insert or refresh entries (a --no-cache job refreshes what it recomputed)."""
    entries = {
        r.key: CacheEntry(
            key=r.key,
            kind=kind,
            result_latex=r.latex,
            validation_score=r.validation_score,
            tokens_in=r.tokens_in,
            tokens_out=r.tokens_out,
            cost_usd=r.cost_usd,
        )
        for r in results
    }
    if entries:
        CacheEntry.objects.bulk_create(
            list(entries.values()),
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=[
                "result_latex",
                "validation_score",
                "tokens_in",
                "tokens_out",
                "cost_usd",
            ],
        )


HITS_CHUNK = 500  # keys per UPDATE (well under SQLite's limit on parameters)


def cache_count_hits(*, keys: Iterable[str]) -> None:
    """Add each key's hits: one UPDATE per distinct count (most keys are hit once per
    flush), not one per key."""
    by_count: dict[int, list[str]] = {}
    for key, n in Counter(keys).items():
        by_count.setdefault(n, []).append(key)
    for n, same in by_count.items():
        for start in range(0, len(same), HITS_CHUNK):
            chunk = same[start : start + HITS_CHUNK]
            CacheEntry.objects.filter(key__in=chunk).update(hits=F("hits") + n)


def repeated_share(mathml_values: Iterable[str]) -> tuple[int, int]:
    """(items whose normalised input occurred earlier in the sequence, all items).

    This is the hit rate a first LLM job over these inputs gets from the cache.
    """
    seen: set[bytes] = set()
    repeated = total = 0
    for mathml in mathml_values:
        total += 1
        digest = hashlib.sha256(normalized_input(mathml).encode("utf-8")).digest()
        if digest in seen:
            repeated += 1
        else:
            seen.add(digest)
    return repeated, total
