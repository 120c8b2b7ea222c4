"""How well the privacy gate (hub/privacy.py) does on its corpus: recall per kind, false positives.

    .venv/bin/python scripts/privacy_report.py [--corpus tests/fixtures/pii_corpus.json] [--details]

For a brand with no scope, every datum listed in the corpus's "personal"
sentences must be masked: an expected datum counts as found when each of its
letters and digits lies inside a masked finding of the same kind ("exact"
also asks for the same start and end). Over-detections are masked findings in
those sentences that touch no expected datum. The false-positive rate is the
share of "ordinary" sentences (no personal data) in which anything is masked.
``--details`` lists every miss, over-detection and false positive.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.privacy import GateResult

Gate = Callable[[str, Set[str], str], "GateResult"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT / "tests" / "fixtures" / "pii_corpus.json"


@dataclass
class Tally:
    """Counts per kind, and one line per miss, over-detection and false positive."""

    expected: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    exact: Counter[str] = field(default_factory=Counter)
    over: Counter[str] = field(default_factory=Counter)
    false: Counter[str] = field(default_factory=Counter)
    flagged: int = 0
    details: list[str] = field(default_factory=list)


def score_personal(tally: Tally, items: list[dict[str, Any]], gate: Gate) -> None:
    for item in items:
        text = item["text"]
        masked = gate(text, frozenset(), item["lang"]).masked
        spans: list[tuple[int, int]] = []
        for expected in item["expected"]:
            kind, value = expected["kind"], expected["text"]
            start = text.find(value)
            while start >= 0:
                end = start + len(value)
                spans.append((start, end))
                tally.expected[kind] += 1
                letters = [i for i in range(start, end) if text[i].isalnum()]
                if all(any(f.kind == kind and f.start <= i < f.end for f in masked) for i in letters):
                    tally.found[kind] += 1
                else:
                    tally.details.append(f"MISS     {item['id']} {kind}: {value!r}")
                tally.exact[kind] += any(f.kind == kind and (f.start, f.end) == (start, end) for f in masked)
                start = text.find(value, end)
        for f in masked:
            if not any(f.start < end and start < f.end for start, end in spans):
                tally.over[f.kind] += 1
                tally.details.append(f"OVER     {item['id']} {f.kind}: {text[f.start : f.end]!r}")


def score_ordinary(tally: Tally, items: list[dict[str, Any]], gate: Gate) -> None:
    for item in items:
        text = item["text"]
        masked = gate(text, frozenset(), item["lang"]).masked
        tally.flagged += bool(masked)
        for f in masked:
            tally.false[f.kind] += 1
            tally.details.append(f"FALSE+   {item['id']} {f.kind}: {text[f.start : f.end]!r} in {text!r}")


def print_table(tally: Tally, kinds: tuple[str, ...]) -> None:
    columns = (("expected", 9), ("found", 7), ("recall", 9), ("exact", 7), ("over", 6), ("false+", 8))
    header = f"{'kind':<16}" + "".join(f"{name:>{width}}" for name, width in columns)
    rule = "─" * len(header)

    def row(kind: str, counts: list[int]) -> str:
        expected, found, exact, over, false = counts
        recall = f"{found / expected:.1%}" if expected else "—"
        cells = (expected, found, recall, exact, over, false)
        return f"{kind:<16}" + "".join(
            f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True)
        )

    counters = (tally.expected, tally.found, tally.exact, tally.over, tally.false)
    print(header)
    print(rule)
    for kind in kinds:
        print(row(kind, [c[kind] for c in counters]))
    print(rule)
    print(row("all", [sum(c.values()) for c in counters]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--details", action="store_true", help="list misses, over-detections, false positives"
    )
    args = parser.parse_args(argv)

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from hub.privacy import KINDS, gate

    corpus: dict[str, Any] = json.loads(args.corpus.read_text(encoding="utf-8"))
    personal: list[dict[str, Any]] = corpus["personal"]
    ordinary: list[dict[str, Any]] = corpus["ordinary"]
    tally = Tally()
    started = time.perf_counter()
    score_personal(tally, personal, gate)
    score_ordinary(tally, ordinary, gate)
    elapsed = time.perf_counter() - started
    sentences = len(personal) + len(ordinary)

    print(f"privacy gate on {args.corpus.name}: {len(personal)} personal, {len(ordinary)} ordinary sentences")
    print()
    print_table(tally, KINDS)
    print()
    rate = tally.flagged / len(ordinary) if ordinary else 0.0
    print(f"false-positive rate on ordinary sentences: {tally.flagged}/{len(ordinary)} = {rate:.1%}")
    print(f"time: {elapsed / sentences * 1000:.2f} ms per sentence ({sentences} sentences)")
    if args.details and tally.details:
        print()
        print("\n".join(tally.details))
    return 0 if sum(tally.found.values()) == sum(tally.expected.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
