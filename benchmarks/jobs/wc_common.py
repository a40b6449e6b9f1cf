"""What both word-count jobs share: the files, the counting, and the digest they print.

A word is a run of ASCII letters and underscores in a file's bytes, case kept. A file that
cannot be read is skipped (by both jobs, the same way); bytes need no decoding.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import sysconfig
import time
from collections import Counter
from collections.abc import Iterable

WORD = re.compile(rb"[A-Za-z_]+")
#: (total words, distinct words, the 10 most common as (word, count))
Summary = tuple[int, int, list[tuple[bytes, int]]]


def list_files(limit: int = 0) -> list[str]:
    """The standard library's .py files, sorted; the first ``limit`` of them if set."""
    root = sysconfig.get_paths()["stdlib"]
    paths: list[str] = []
    for folder, dirs, files in os.walk(root):
        # third-party packages live under the stdlib directory too, and are not the stdlib
        dirs[:] = [d for d in dirs if d != "site-packages"]
        paths.extend(os.path.join(folder, f) for f in files if f.endswith(".py"))
    paths.sort()
    return paths[:limit] if limit > 0 else paths


def count_files(paths: Iterable[str], counts: Counter[bytes] | None = None) -> Counter[bytes]:
    """Count the words of these files, into ``counts`` if given (else a new Counter)."""
    if counts is None:
        counts = Counter()
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        counts.update(WORD.findall(data))
    return counts


def _top(items: Iterable[tuple[bytes, int]], n: int = 10) -> list[tuple[bytes, int]]:
    # ties by word: Counter.most_common breaks them by insertion order, which differs
    # between the jobs
    return heapq.nsmallest(n, items, key=lambda item: (-item[1], item[0]))


def summary(counts: dict[bytes, int]) -> Summary:
    return sum(counts.values()), len(counts), _top(counts.items())


def combine(parts: Iterable[Summary]) -> Summary:
    """The summary of the union of counts with disjoint words, from each one's summary."""
    parts = list(parts)
    return (
        sum(p[0] for p in parts),
        sum(p[1] for p in parts),
        _top(item for p in parts for item in p[2]),
    )


def digest(result: Summary) -> str:
    total, distinct, top = result
    words = ",".join(f"{w.decode()}:{n}" for w, n in top)
    return f"digest=words {total} distinct {distinct} top {words}"


def phases(stamps: dict[str, float]) -> str:
    """A line of wall-clock stamps (time.time()), for the benchmark's breakdown."""
    return "phases=" + json.dumps({**stamps, "end": time.time()})
