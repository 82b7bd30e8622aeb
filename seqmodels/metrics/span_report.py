"""Per-type span scores (conlleval's table) and the most frequent span errors, with examples.

:func:`span_report` takes token, gold and predicted tag sequences and returns a plain dict
(JSON-ready): per-type precision/recall/F1/support from seqeval, the micro average, and the span
errors grouped by kind and types. :func:`format_report` renders it as a readable text table and
:func:`write_report` saves both (``<name>.txt`` and ``<name>.json``) into a run folder.

Error kinds, for each predicted span that is not exactly a gold one: ``wrong type`` (same
tokens, another type), ``wrong boundary`` (overlaps a gold span of its type), ``wrong type and
boundary`` (overlaps only spans of other types), ``spurious`` (overlaps no gold span); for each
gold span that no prediction touches: ``missed``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

ERROR_KINDS = ("wrong type", "wrong boundary", "wrong type and boundary", "spurious", "missed")
EXAMPLES_PER_ERROR = 3
CONTEXT_TOKENS = 3


def scores(correct: int, predicted: int, gold: int) -> dict[str, float | int]:
    """Precision, recall and F1 in percent (0 where undefined) plus the counts."""
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": gold,
            "predicted": predicted, "correct": correct}  # fmt: skip


def per_type_scores(
    golds: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]
) -> dict[str, dict[str, float | int]]:
    """Per entity/slot type: seqeval's precision, recall, F1 (percent) and support."""
    golds, preds = [list(g) for g in golds], [list(p) for p in preds]
    types = sorted({t for t, _, _ in get_entities(golds)} | {t for t, _, _ in get_entities(preds)})
    if not types:
        return {}
    precision, recall, f1, support = precision_recall_fscore_support(
        golds, preds, average=None, zero_division=0
    )
    predicted = Counter(t for t, _, _ in get_entities(preds))
    return {
        name: {
            "precision": 100.0 * float(p),
            "recall": 100.0 * float(r),
            "f1": 100.0 * float(f),
            "support": int(s),
            "predicted": predicted[name],
        }
        for name, p, r, f, s in zip(types, precision, recall, f1, support)
    }


def _bracketed(tokens: Sequence[str], span: tuple[str, int, int], lo: int, hi: int) -> str:
    """``tokens[lo:hi+1]`` with ``[...]type`` around the span."""
    kind, start, end = span
    words = list(tokens[lo : hi + 1])
    words[start - lo] = "[" + words[start - lo]
    words[end - lo] = words[end - lo] + "]" + kind
    return " ".join(words)


def _example(tokens: Sequence[str], gold: tuple | None, pred: tuple | None) -> str:
    """The gold and the predicted span (whichever exist) in a few tokens of context."""
    spans = [s for s in (gold, pred) if s is not None]
    lo = max(0, min(s[1] for s in spans) - CONTEXT_TOKENS)
    hi = min(len(tokens) - 1, max(s[2] for s in spans) + CONTEXT_TOKENS)
    parts = [f"gold: {_bracketed(tokens, gold, lo, hi)}"] if gold else []
    parts += [f"predicted: {_bracketed(tokens, pred, lo, hi)}"] if pred else []
    return " | ".join(parts)


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[1] <= b[2] and b[1] <= a[2]


def sentence_errors(
    tokens: Sequence[str], gold: Sequence[str], pred: Sequence[str]
) -> list[tuple[str, str, str, str]]:
    """``(kind, gold type, predicted type, example)`` for each span error of one sentence."""
    gold_spans, pred_spans = set(get_entities(list(gold))), set(get_entities(list(pred)))
    errors = []
    touched: set[tuple] = set()
    for p in sorted(pred_spans - gold_spans, key=lambda s: s[1]):
        overlapping = sorted((g for g in gold_spans if _overlaps(g, p)), key=lambda s: s[1])
        touched.update(overlapping)
        same_tokens = [g for g in overlapping if g[1:] == p[1:]]
        same_type = [g for g in overlapping if g[0] == p[0]]
        if same_tokens:
            kind, g = "wrong type", same_tokens[0]
        elif same_type:
            kind, g = "wrong boundary", same_type[0]
        elif overlapping:
            kind, g = "wrong type and boundary", overlapping[0]
        else:
            kind, g = "spurious", None
        errors.append((kind, g[0] if g else "-", p[0], _example(tokens, g, p)))
    for g in sorted(gold_spans - pred_spans - touched, key=lambda s: s[1]):
        errors.append(("missed", g[0], "-", _example(tokens, g, None)))
    return errors


def span_errors(utterances: Sequence[dict[str, Sequence[str]]], top: int = 20) -> dict[str, Any]:
    """Counts per error kind and the ``top`` most frequent ``(kind, gold, predicted)`` errors,
    each with up to :data:`EXAMPLES_PER_ERROR` examples. ``utterances``: dicts with
    ``tokens``, ``gold`` and ``predicted`` tag lists (what ``predict_step`` returns)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for utt in utterances:
        for kind, gold, pred, example in sentence_errors(
            utt["tokens"], utt["gold"], utt["predicted"]
        ):
            key = (kind, gold, pred)
            counts[key] += 1
            if len(examples[key]) < EXAMPLES_PER_ERROR:
                examples[key].append(example)
    by_kind = Counter()
    for (kind, _, _), n in counts.items():
        by_kind[kind] += n
    return {
        "by_kind": {kind: by_kind[kind] for kind in ERROR_KINDS},
        "most_frequent": [
            {"kind": k, "gold": g, "predicted": p, "count": n, "examples": examples[(k, g, p)]}
            for (k, g, p), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        ],
    }


def span_report(utterances: Sequence[dict[str, Sequence[str]]], top: int = 20) -> dict[str, Any]:
    """Per-type scores, micro average and span errors of tagged ``utterances``."""
    golds = [list(u["gold"]) for u in utterances]
    preds = [list(u["predicted"]) for u in utterances]
    per_type = per_type_scores(golds, preds)
    gold_spans = {(i, *s) for i, g in enumerate(golds) for s in get_entities(g)}
    pred_spans = {(i, *s) for i, p in enumerate(preds) for s in get_entities(p)}
    micro = scores(len(gold_spans & pred_spans), len(pred_spans), len(gold_spans))
    return {
        "tokens": sum(len(g) for g in golds),
        "per_type": per_type,
        "micro": micro,
        "errors": span_errors(utterances, top),
    }


def format_table(per_type: dict[str, dict[str, Any]], micro: dict[str, Any]) -> str:
    """conlleval's per-type table: one row per type, then the micro average."""
    width = max([len("micro avg"), *(len(t) for t in per_type)])
    header = f"{'type':<{width}}  precision  recall      f1  support  predicted"
    rows = [header]
    for name, s in [*per_type.items(), ("micro avg", micro)]:
        rows.append(
            f"{name:<{width}}  {s['precision']:9.2f}  {s['recall']:6.2f}  {s['f1']:6.2f}"
            f"  {s['support']:7d}  {s['predicted']:9d}"
        )
    return "\n".join(rows)


def format_errors(errors: dict[str, Any]) -> str:
    """Counts per error kind, then the most frequent errors with their examples."""
    lines = ["span errors: " + ", ".join(f"{k} {n}" for k, n in errors["by_kind"].items())]
    for e in errors["most_frequent"]:
        pair = f"gold {e['gold']} -> predicted {e['predicted']}"
        lines.append(f"{e['count']:5d}  {e['kind']}: {pair}")
        lines.extend(f"         {example}" for example in e["examples"])
    return "\n".join(lines)


def format_report(report: dict[str, Any], title: str = "") -> str:
    """The whole report as text: a title line, the per-type table, the span errors."""
    micro = report["micro"]
    head = (
        f"{report.get('tokens', 0)} tokens, {micro['support']} gold spans, "
        f"{micro['predicted']} predicted, {micro['correct']} correct"
    )
    parts = [f"{title}: {head}" if title else head, format_table(report["per_type"], micro)]
    if report.get("errors"):
        parts.append(format_errors(report["errors"]))
    return "\n\n".join(parts) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(folder: str | Path, report: dict[str, Any], name: str, title: str = "") -> Path:
    """``<folder>/<name>.txt`` (readable) and ``<name>.json``; returns the text file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / f"{name}.json", json.dumps(report, indent=2) + "\n")
    _write_atomic(folder / f"{name}.txt", format_report(report, title))
    return folder / f"{name}.txt"
