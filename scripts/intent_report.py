"""How well hub.intent recognises requests for a human: precision, recall, F1 and the misses.

    .venv/bin/python scripts/intent_report.py [PHRASES.json ...]

With no argument it reads tests/fixtures/human_requests.json. Each file is a
JSON list of {"text", "lang": "fr"|"en", "human": bool}. Prints one table of
figures per language and overall, then every misclassified utterance with the
detector's score and reason, and the mean time per utterance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "tests" / "fixtures" / "human_requests.json"


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, predicted: bool, expected: bool) -> None:
        if predicted and expected:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif expected:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _load(paths: list[Path]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for path in paths:
        items.extend(json.loads(path.read_text(encoding="utf-8")))
    return items


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[DEFAULT], help="labelled phrase files")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from hub.intent import detect_human_request

    items = _load(args.paths)
    counts = {"fr": Counts(), "en": Counts(), "all": Counts()}
    wrong: list[tuple[str, dict[str, Any], float, str]] = []
    start = time.perf_counter()
    for item in items:
        verdict = detect_human_request(item["text"])
        expected = bool(item["human"])
        counts[item["lang"]].add(verdict.wants_human, expected)
        counts["all"].add(verdict.wants_human, expected)
        if verdict.wants_human != expected:
            wrong.append(("FN" if expected else "FP", item, verdict.score, verdict.reason))
    elapsed = time.perf_counter() - start

    print(f"{len(items)} utterances from {', '.join(str(p) for p in args.paths)}\n")
    header = ("set", "n", "pos", "TP", "FP", "FN", "TN", "prec", "recall", "F1")
    print(
        f"{header[0]:<5} "
        + " ".join(f"{h:>4}" for h in header[1:7])
        + " ".join(f"{h:>7}" for h in header[7:])
    )
    for name, c in counts.items():
        n = c.tp + c.fp + c.fn + c.tn
        print(
            f"{name:<5} {n:>4} {c.tp + c.fn:>4} {c.tp:>4} {c.fp:>4} {c.fn:>4} {c.tn:>4} "
            f"{c.precision:>6.3f} {c.recall:>6.3f} {c.f1:>6.3f}"
        )

    print(f"\nmisclassified: {len(wrong)}")
    if wrong:
        print(f"{'err':<4} {'lang':<4} {'score':>5}  {'text':<60}  reason")
        for kind, item, score, reason in wrong:
            print(f"{kind:<4} {item['lang']:<4} {score:>5.2f}  {_clip(item['text'], 60):<60}  {reason}")
    per_utterance_us = elapsed / max(len(items), 1) * 1e6
    print(f"\nmean time per utterance: {per_utterance_us:.0f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
