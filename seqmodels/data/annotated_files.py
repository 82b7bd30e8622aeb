"""Annotated text (JSON, JSONL) -> tagged utterances: entities as character spans become BIO tags.

One example is an object with ``text``, an optional ``intent`` and its entities as character
spans. Read here:

- Rasa NLU JSON: ``{"rasa_nlu_data": {"common_examples": [{"text", "intent", "entities"}]}}``;
- Snips NLU's dataset JSON: ``{"intents": {name: {"utterances": [{"data": [chunks]}]}}}``, each
  chunk ``{"text"}`` or ``{"text", "entity", "slot_name"}`` (the slot name is the tag type);
- JSONL (or a JSON list) of objects, one per line: spaCy/Prodigy (``spans``), Doccano
  (``label`` or ``entities`` as ``[start, end, label]`` lists), Rasa-style ``entities``
  (``start``, ``end``, ``entity`` or ``label``, optional ``value``), and what ``scripts/tag.py``
  prints (its ``intent`` an object with ``name``; a string works too). Prodigy's rejected and
  ignored answers are skipped.

An example with ``tokens`` (``[{"text", "start", "end"}]`` as tag.py prints them, or strings
found in order in the text) is read with those tokens; one without is split into words and
punctuation as tag.py's tokenizer first splits it (:func:`seqmodels.data.raw_text.split_tokens`).
The entities, not any ``tags`` in the object, are the truth: tags are rebuilt from them. A span
must start and end on token boundaries (surrounding spaces are trimmed), lie inside the text and
not overlap another; otherwise a :class:`DatasetError` names the file, the line and the span.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqmodels.core.errors import DatasetError
from seqmodels.data.chunks import chunks
from seqmodels.data.conll_files import NO_LABEL
from seqmodels.data.raw_text import Token, split_tokens
from seqmodels.data.slot_files import Utterance
from seqmodels.data.text_files import read_text

SUFFIXES = (".json", ".jsonl")
SKIPPED_ANSWERS = ("reject", "ignore")  # Prodigy
SPAN_KEYS = ("entities", "spans", "label")


@dataclass
class Example:
    """One annotated text as read: entity spans ``(start, end, label)`` and where it was."""

    text: str
    intent: str
    spans: list[tuple[int, int, str]]
    tokens: list[Token] | None
    where: str  # "file:line"


class LinedDict(dict):
    """A JSON object that knows the line its ``{`` is on."""

    line = 0


class LinedList(list):
    """A JSON array that knows the line its ``[`` is on and the line each item starts on."""

    line = 0
    lines: list[int] = []


def line_of(value: Any, parent: Any = None, index: int = 0) -> int:
    """The line ``value`` starts on: its own (an object, an array), else its place in ``parent``."""
    if isinstance(value, (LinedDict, LinedList)):
        return value.line
    lines = getattr(parent, "lines", None)
    return lines[index] if lines and index < len(lines) else getattr(parent, "line", 0)


def load_json(path: Path) -> Any:
    """A JSON file's value; each object a :class:`LinedDict` carrying its line number."""
    text = read_text(path)
    newlines = [m.start() for m in re.finditer("\n", text)]
    decoder = json.JSONDecoder()

    def line(index: int) -> int:
        return bisect.bisect_right(newlines, index) + 1

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[dict, int]:
        obj, end = json.decoder.JSONObject(s_and_end, *args)
        lined = LinedDict(obj)
        lined.line = line(s_and_end[1] - 1)
        return lined, end

    def parse_array(s_and_end: tuple[str, int], scan_once: Any) -> tuple[list, int]:
        starts: list[int] = []

        def scan(string: str, index: int) -> Any:
            starts.append(index)  # where each item begins (after the whitespace)
            return scan_once(string, index)

        items, end = json.decoder.JSONArray(s_and_end, scan)
        lined = LinedList(items)
        lined.line, lined.lines = line(s_and_end[1] - 1), [line(i) for i in starts]
        return lined, end

    # The pure-Python scanner calls these two (the C one does not).
    decoder.parse_object, decoder.parse_array = parse_object, parse_array
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None


def plain_tokens(text: str) -> list[Token]:
    """Words and punctuation marks of ``text`` with their spans, as tag.py's tokenizer first
    splits typed text (before its vocabulary decides what to keep): composed (NFC), spans
    into the text as typed."""
    return split_tokens(text)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def kind(value: Any) -> str:
    """The JSON kind of a value, for messages: object, list, string, ..."""
    kinds = ((dict, "object"), (list, "list"), (str, "string"), (bool, "boolean"))
    if value is None:
        return "null"
    return next((name for cls, name in kinds if isinstance(value, cls)), "number")


def read_tokens(raw: Any, text: str, where: str) -> list[Token]:
    """``tokens`` as given: objects with text, start and end, or strings located in order."""
    if not isinstance(raw, list):
        raise DatasetError(f"{where}: tokens must be a list, got {kind(raw)}")
    tokens: list[Token] = []
    position = 0
    for item in raw:
        if isinstance(item, str):
            start = text.find(item, position)
            if not item.strip() or start < 0:
                raise DatasetError(f"{where}: token {item!r} not in the text after {position}")
            token = Token(item, start, start + len(item))
        elif isinstance(item, dict) and is_int(item.get("start")) and is_int(item.get("end")):
            form = item.get("text", text[item["start"] : item["end"]])
            if not isinstance(form, str):
                raise DatasetError(f"{where}: a token's text must be a string: {item}")
            token = Token(form, item["start"], item["end"])
        else:
            raise DatasetError(f"{where}: a token must be a string or {{text, start, end}}: {item}")
        if not position <= token.start < token.end <= len(text):
            raise DatasetError(
                f"{where}: token {token.text!r} [{token.start}, {token.end}] is outside the text "
                f"({len(text)} characters) or overlaps the token before it"
            )
        if not token.text or any(c.isspace() for c in token.text):
            raise DatasetError(f"{where}: token {token.text!r} is empty or holds a space")
        tokens.append(token)
        position = token.end
    return tokens


def read_span(item: Any, where: str) -> tuple[int, int, str, str | None]:
    """``(start, end, label, value or None)`` of one entity in any of the accepted shapes."""
    if isinstance(item, (list, tuple)) and len(item) == 3:
        start, end, label, value = *item, None
    elif isinstance(item, dict):
        start, end, value = item.get("start"), item.get("end"), item.get("value")
        label = item.get("entity", item.get("label"))
    else:
        raise DatasetError(
            f"{where}: an entity must be {{start, end, entity}} or [start, end, label]: {item}"
        )
    if not (is_int(start) and is_int(end)):
        raise DatasetError(f"{where}: entity {item}: start and end must be whole numbers")
    if not isinstance(label, str) or not label or any(c.isspace() for c in label):
        raise DatasetError(f"{where}: entity {item}: its label must be a word without spaces")
    return start, end, label, value


def example_of(obj: Any, where: str) -> Example | None:
    """The example of one JSON object (None for a Prodigy answer to skip)."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: an example must be a JSON object, got {kind(obj)}")
    if obj.get("answer") in SKIPPED_ANSWERS:
        return None
    text = obj.get("text")
    if not isinstance(text, str):
        raise DatasetError(f'{where}: an example needs "text" (a string)')
    intent = obj.get("intent")
    if isinstance(intent, dict):  # tag.py's {"name": ..., "confidence": ...}
        intent = intent.get("name")
    intent = NO_LABEL if intent is None else intent
    if not isinstance(intent, str) or not intent.strip():
        raise DatasetError(f"{where}: intent must be a non-empty string, got {intent!r}")
    for key in SPAN_KEYS:
        value = obj.get(key)
        if (
            value is not None
            and not isinstance(value, list)
            and not (key == "label" and isinstance(value, str))
        ):
            raise DatasetError(
                f"{where}: {key!r} must be a list of entities, got {json.dumps(value)[:80]}"
            )
    raw = next((obj[k] for k in SPAN_KEYS if isinstance(obj.get(k), list)), [])
    spans = []
    for item in raw:
        start, end, label, value = read_span(item, where)
        span = f"[{start}, {end}] {label}"
        if not 0 <= start < end <= len(text):
            raise DatasetError(
                f"{where}: entity {span} lies outside the text ({len(text)} characters)"
            )
        if value is not None and text[start:end] != value:
            raise DatasetError(
                f"{where}: entity {span}: value {value!r} is not the text there, "
                f"{text[start:end]!r}"
            )
        covered = text[start:end]
        start += len(covered) - len(covered.lstrip())
        end -= len(covered) - len(covered.rstrip())
        if start >= end:
            raise DatasetError(f"{where}: entity {span} covers only spaces: {covered!r}")
        spans.append((start, end, label))
    tokens = read_tokens(obj["tokens"], text, where) if obj.get("tokens") is not None else None
    return Example(text, intent.strip(), sorted(spans), tokens, where)


def utterance_of(example: Example) -> Utterance | None:
    """Tokens and BIO tags of ``example`` (None if its text has no token)."""
    tokens = example.tokens if example.tokens is not None else plain_tokens(example.text)
    if not tokens:
        return None
    firsts = {t.start: i for i, t in enumerate(tokens)}
    lasts = {t.end: i for i, t in enumerate(tokens)}
    tags = ["O"] * len(tokens)
    previous = None
    for start, end, label in example.spans:
        value = example.text[start:end]
        span = f"[{start}, {end}] {label} {value!r}"
        if previous is not None and start < previous[1]:
            other = f"[{previous[0]}, {previous[1]}] {previous[2]}"
            raise DatasetError(f"{example.where}: entity {span} overlaps entity {other}")
        if start not in firsts or end not in lasts:
            cut = [t for t in tokens if t.start < end and start < t.end]
            cut_text = ", ".join(f"{t.text!r} [{t.start}, {t.end}]" for t in cut) or "none"
            raise DatasetError(
                f"{example.where}: entity {span} does not fall on token boundaries "
                f"(tokens there: {cut_text})"
            )
        first, last = firsts[start], lasts[end]
        tags[first : last + 1] = [f"B-{label}"] + [f"I-{label}"] * (last - first)
        previous = (start, end, label)
    return Utterance([t.text for t in tokens], tags, example.intent)


def snips_nlu_examples(data: dict, path: Path) -> list[Example]:
    """Snips NLU's dataset: each utterance's chunks joined, slot chunks as entity spans."""
    examples = []
    for intent, body in data["intents"].items():
        where = f"{path}:{line_of(body, data['intents'])}"
        if not isinstance(body, dict):
            raise DatasetError(
                f'{where}: intent {intent!r} must be an object with "utterances", got {kind(body)}'
            )
        utterances = body.get("utterances", [])
        if not isinstance(utterances, list):
            raise DatasetError(f'{where}: intent {intent!r}: "utterances" must be a list')
        for index, utterance in enumerate(utterances):
            where = f"{path}:{line_of(utterance, utterances, index)}"
            if not isinstance(utterance, dict) or not isinstance(utterance.get("data", []), list):
                raise DatasetError(
                    f'{where}: a Snips utterance must be an object {{"data": [chunks]}}, '
                    f"got {json.dumps(utterance)[:80]}"
                )
            text, spans = "", []
            chunks_ = utterance.get("data", [])
            for position, chunk in enumerate(chunks_):
                at = f"{path}:{line_of(chunk, chunks_, position)}"
                if not isinstance(chunk, dict) or not isinstance(chunk.get("text"), str):
                    raise DatasetError(
                        f'{at}: a Snips chunk must be an object with "text" (a string), '
                        f"got {json.dumps(chunk)[:80]}"
                    )
                piece = chunk["text"]
                label = chunk.get("slot_name") or chunk.get("entity")
                if label and piece:  # a slot on spaces alone is refused by example_of
                    spans.append([len(text), len(text) + len(piece), label])
                text += piece
            obj = {"text": text, "intent": intent, "entities": spans}
            if (example := example_of(obj, where)) is not None:
                examples.append(example)
    return examples


def read_examples(path: str | Path) -> list[Example]:
    """Every example of one ``.json`` or ``.jsonl`` file."""
    path = Path(path).expanduser()
    if path.suffix == ".jsonl":
        examples = []
        for line_no, line in enumerate(read_text(path).split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{line_no}: not valid JSON: {err.msg}") from None
            if (example := example_of(obj, f"{path}:{line_no}")) is not None:
                examples.append(example)
        return examples
    if path.suffix != ".json":
        raise DatasetError(f"{path}: annotated data is .json or .jsonl, not {path.suffix!r}")
    data = load_json(path)
    if isinstance(data, dict) and isinstance(data.get("rasa_nlu_data"), dict):
        data = data["rasa_nlu_data"].get("common_examples", [])
    elif isinstance(data, dict) and isinstance(data.get("intents"), dict):
        return snips_nlu_examples(data, path)
    if not isinstance(data, list):
        raise DatasetError(
            f'{path}: expected Rasa NLU JSON ({{"rasa_nlu_data": ...}}), a Snips NLU dataset '
            "or a list of examples"
        )
    examples = [example_of(obj, f"{path}:{line_of(obj, data, i)}") for i, obj in enumerate(data)]
    return [e for e in examples if e is not None]


def read_annotated(path: str | Path) -> tuple[list[Utterance], int]:
    """The utterances of one file and how many examples had no token (skipped)."""
    utterances = [utterance_of(e) for e in read_examples(path)]
    kept = [u for u in utterances if u is not None]
    return kept, len(utterances) - len(kept)


def record_of(utterance: Utterance) -> dict[str, Any]:
    """An utterance as annotated JSON: its words joined by spaces, entities as character spans,
    the tokens with their spans (so it reads back to the same tokens and tags)."""
    starts, position = [], 0
    for word in utterance.words:
        starts.append(position)
        position += len(word) + 1
    text = " ".join(utterance.words)
    record: dict[str, Any] = {"text": text}
    if utterance.intent != NO_LABEL:
        record["intent"] = utterance.intent
    record["entities"] = [
        {
            "entity": kind,
            "value": text[starts[first] : starts[last] + len(utterance.words[last])],
            "start": starts[first],
            "end": starts[last] + len(utterance.words[last]),
        }
        for kind, first, last in chunks(utterance.tags)
    ]
    record["tokens"] = [
        {"text": w, "start": s, "end": s + len(w)} for w, s in zip(utterance.words, starts)
    ]
    return record
