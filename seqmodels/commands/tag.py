"""Tag typed sentences with a slot-filling checkpoint: ``python scripts/tag.py ckpt_path=...``.

Each sentence (``text=``, or each line of stdin) becomes one line of JSON in the shape of Rasa
NLU's parse output (``text``, ``intent`` with ``name`` and ``confidence``, ``entities`` with
``entity``, ``value``, ``start``, ``end``, ``confidence_entity``), plus the ``tokens`` the model
read (with their character spans) and their ``tags``. Text is tokenised as the training data
was (:mod:`seqmodels.data.raw_text`); an entity's ``value`` is ``text[start:end]``, as typed.
Entities are chunks by seqeval's (conlleval's) rules, as the span F1 counts them. Confidences:
the intent's softmax probability; an entity's lowest token probability of its tags (the
softmax's, or with a CRF decoder the CRF's marginal). ``format=table`` prints a table instead.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TextIO

import hydra
import torch
from omegaconf import DictConfig
from torch.nn.utils.rnn import pad_sequence

from seqmodels.core.errors import ConfigError, errors_reported
from seqmodels.data.char_ids import encode_chars, pad_chars
from seqmodels.data.chunks import chunks
from seqmodels.data.raw_text import RawTextTokenizer, Token
from seqmodels.data.vocab import UNK, Vocab
from seqmodels.data.word_forms import word_form
from seqmodels.nets import SlotTaggerNet, load_net
from seqmodels.plumbing.cli import (
    CONFIG_DIR,
    check_ckpt_path,
    check_device,
    check_num_threads,
    one_line_errors,
)
from seqmodels.plumbing.quick_start import quick_main

log = logging.getLogger(__name__)

FORMATS = ("json", "table")


def probability(p: float) -> float:
    """Four significant digits: readable, and never rounded down to zero."""
    return float(f"{p:.4g}")


def entities_of(
    text: str, tokens: Sequence[Token], tags: Sequence[str], confidences: Sequence[float]
) -> list[dict[str, Any]]:
    """One entity per chunk of ``tags``: its type, the text it covers, and its confidence (the
    lowest probability among its tokens' tags)."""
    entities = []
    for kind, first, last in chunks(tags):
        start, end = tokens[first].start, tokens[last].end
        entities.append(
            {
                "entity": kind,
                "value": text[start:end],
                "start": start,
                "end": end,
                "confidence_entity": probability(min(confidences[first : last + 1])),
            }
        )
    return entities


def untagged(text: str, has_intents: bool = True) -> dict[str, Any]:
    """The result for text with no word in it (a blank line), in the same schema."""
    return {
        "text": text,
        "intent": {"name": None, "confidence": 0.0} if has_intents else None,
        "entities": [],
        "tokens": [],
        "tags": [],
    }


class Tagger:
    """A slot tagger from a checkpoint: typed sentences in, results in this module's schema out.

    ``module`` is a :class:`seqmodels.nets.SlotTaggerNet` (or the task module, which is one).
    """

    def __init__(self, module: SlotTaggerNet, vocabs: dict[str, list[str]]) -> None:
        self.module = module.eval()
        self.words = Vocab(vocabs["words"], unk=UNK)
        self.word_forms = list(vocabs.get("word_forms", []))  # data.lowercase_words/zero_digits
        self.tokenizer = RawTextTokenizer(vocabs["words"], self.word_forms, vocabs.get("chars"))
        # Character ids for models with model.char_features (their vocabularies have "chars").
        self.chars = Vocab(vocabs["chars"], unk=UNK) if "chars" in vocabs else None
        self.intents = list(vocabs["intents"])
        # Data without sentence labels (NER): every result's "intent" is null.
        self.has_intents = bool(getattr(module, "has_intents", True))

    def __call__(self, text: str) -> dict[str, Any]:
        return self.tag_batch([text])[0]

    def tag_batch(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """One result per text, the texts run through the model as one padded batch."""
        tokenized = [self.tokenizer(text) for text in texts]
        results = [untagged(text, self.has_intents) for text in texts]
        rows = [i for i, tokens in enumerate(tokenized) if tokens]
        if not rows:
            return results
        predicted = self.predict([[t.text for t in tokenized[i]] for i in rows])
        for i, (tags, confidences, intent, intent_p) in zip(rows, predicted):
            text, tokens = texts[i], tokenized[i]
            results[i] = {
                "text": text,
                "intent": (
                    {"name": intent, "confidence": probability(intent_p)}
                    if intent is not None
                    else None
                ),
                "entities": entities_of(text, tokens, tags, confidences),
                "tokens": [{"text": t.text, "start": t.start, "end": t.end} for t in tokens],
                "tags": tags,
            }
        return results

    def predict(
        self, sentences: list[list[str]]
    ) -> list[tuple[list[str], list[float], str | None, float]]:
        """Per sentence (a non-empty token list): its tags, each tag's probability, the intent
        and its probability (``None`` and 0 for a model without intents)."""
        device = next(self.module.parameters()).device
        ids = [
            torch.tensor(self.words.encode([word_form(t, self.word_forms) for t in tokens]))
            for tokens in sentences
        ]
        words = pad_sequence(ids, batch_first=True).to(device)
        lengths = torch.tensor([len(tokens) for tokens in sentences])
        mask = torch.arange(words.size(1), device=device) < lengths.to(device).unsqueeze(1)
        chars = None
        if self.chars is not None:
            chars = pad_chars([encode_chars(tokens, self.chars) for tokens in sentences])
            chars = chars.to(device)
        module = self.module
        char_lm = module.char_lm_inputs(sentences, device)  # model.char_lm_features, or None
        with torch.inference_mode():
            tag_scores, intent_logits = module(words, lengths, chars, char_lm)
            tag_ids = module.predict_tags(tag_scores, mask)
            tag_probs = module.tag_probabilities(tag_scores, mask)
            tag_p = tag_probs.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
            if self.has_intents and intent_logits is not None:
                intent_p, intent_ids = module.intent_probabilities(intent_logits).max(-1)
                intents = [
                    (self.intents[i], p) for i, p in zip(intent_ids.tolist(), intent_p.tolist())
                ]
            else:
                intents = [(None, 0.0)] * len(sentences)
        tags = module.decode(tag_ids, lengths)
        return [
            (row, p[: len(row)], intent, ip)
            for row, p, (intent, ip) in zip(tags, tag_p.tolist(), intents)
        ]

    def table(self, result: dict[str, Any]) -> str:
        """A result for reading: the text, a token/tag/probability table, intent and slots."""
        lines = [f"text: {result['text']}"]
        tokens = [t["text"] for t in result["tokens"]]
        width = max((len(t) for t in tokens), default=0)
        tag_width = max((len(t) for t in result["tags"]), default=0)
        for token, tag_ in zip(tokens, result["tags"]):
            known = word_form(token, self.word_forms) in self.words  # looked up as trained
            note = "" if known else f"  ({UNK}: not in the training vocabulary)"
            lines.append(f"  {token:<{width}}  {tag_:<{tag_width}}{note}".rstrip())
        intent = result["intent"]
        if not tokens:
            lines.append("intent: none (no words to tag)" if intent else "(no words to tag)")
        elif intent is not None:
            lines.append(f"intent: {intent['name']} ({intent['confidence']:.3f})")
        for e in result["entities"]:
            lines.append(
                f"slot: {e['entity']} = {json.dumps(e['value'], ensure_ascii=False)} "
                f"[{e['start']}:{e['end']}] "
                f"({e['confidence_entity']:.3f})"
            )
        return "\n".join(lines) + "\n"


def batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """``lines`` without their line ends, ``size`` at a time."""
    texts = (line.removesuffix("\n").removesuffix("\r") for line in lines)
    while chunk := list(islice(texts, size)):
        yield chunk


def check_options(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    if not isinstance(cfg.batch_size, int) or isinstance(cfg.batch_size, bool):
        raise ConfigError(f"batch_size must be a whole number >= 1, got {cfg.batch_size!r}")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number >= 1, got {cfg.batch_size!r}")
    check_device(cfg.device)
    check_num_threads(cfg.get("num_threads"))


def tag(
    cfg: DictConfig,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    collect: bool = True,
) -> list[dict] | None:
    """Tag ``cfg.text``, or every line of ``stdin`` (``cfg.batch_size`` lines per batch); write
    one JSON line per sentence to ``out`` (``format=table``: a table per sentence), each batch
    as soon as it is tagged. ``collect``: also return the results as a list (in-process use);
    the command line passes ``False`` and streams, so memory stays flat over any input."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    check_options(cfg)
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    net, checkpoint = load_net(cfg.ckpt_path, data_kind="slot_filling")
    tagger = Tagger(net.to(cfg.device), checkpoint["hyper_parameters"]["vocabs"])

    def write(result: dict[str, Any]) -> None:
        if cfg.format == "table":
            out.write(tagger.table(result) + "\n")
        else:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")

    if cfg.text is not None:
        result = tagger(str(cfg.text))
        write(result)
        return [result] if collect else None
    # Typed at a terminal, each line is answered at once; piped, lines are batched.
    size = 1 if stdin.isatty() else cfg.batch_size
    results: list[dict] | None = [] if collect else None
    for chunk in batches(stdin, size):
        for result in tagger.tag_batch(chunk):
            write(result)
            if results is not None:
                results.append(result)
        out.flush()
    return results


def checked_tag(cfg: DictConfig) -> None:
    check_ckpt_path(cfg, "a slot-filling checkpoint written by scripts/train.py")
    tag(cfg, collect=False)  # streamed: nothing kept after it is printed


@one_line_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="tag")
def hydra_main(cfg: DictConfig) -> None:
    with errors_reported(log):
        checked_tag(cfg)


def main() -> None:
    """``python scripts/tag.py ckpt_path=<slot-filling checkpoint> [text="..."]``."""
    quick_main("tag", checked_tag, hydra_main)
