"""Tag sentences with a slot-filling checkpoint alone: ``python scripts/tag.py ckpt_path=...``.

``text=`` prints each token with its tag, then ``{"intent": ..., "slots": {...}}`` as JSON.
Without ``text=`` it reads one sentence per line from stdin and writes one JSON object per line.
Slots are chunks by seqeval's (conlleval's) rules, as the span F1 counts them; a chunk's words are
joined with spaces, and a slot type that occurs more than once gets a list of its values.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import hydra
import torch
from omegaconf import DictConfig

from seqmodels.data.slot_filling import encode_chars, pad_chars
from seqmodels.data.vocab import UNK, Vocab
from seqmodels.errors import errors_reported
from seqmodels.evaluate import load_module
from seqmodels.metrics import spans
from seqmodels.train import CONFIG_DIR

log = logging.getLogger(__name__)


def slots_of(tokens: list[str], tags: list[str]) -> dict[str, str | list[str]]:
    """Slot type -> words of its chunk (a list of them for a type that occurs twice or more)."""
    slots: dict[str, str | list[str]] = {}
    for kind, first, last in spans(tags):
        value = " ".join(tokens[first : last + 1])
        if kind not in slots:
            slots[kind] = value
        elif isinstance(slots[kind], list):
            slots[kind].append(value)
        else:
            slots[kind] = [slots[kind], value]
    return slots


class Tagger:
    """A slot tagger from a checkpoint, tokenising as its training data was."""

    def __init__(self, module: torch.nn.Module, vocabs: dict[str, list[str]]) -> None:
        self.module = module.eval()
        self.words = Vocab(vocabs["words"], unk=UNK)
        # Character ids for models with model.char_features (their vocabularies have "chars").
        self.chars = Vocab(vocabs["chars"], unk=UNK) if "chars" in vocabs else None
        self.intents = list(vocabs["intents"])
        # ATIS and SNIPS are lower-case; a training set with capitals keeps the case as typed.
        self.lowercase = all(w == w.lower() for w in vocabs["words"])

    def tokenize(self, text: str) -> list[str]:
        """Split on whitespace (and lower-case, if the training words all are)."""
        return (text.lower() if self.lowercase else text).split()

    def __call__(self, text: str) -> dict[str, Any]:
        """``tokens``, ``tags``, ``unknown`` (tokens read as ``<unk>``), ``intent``, ``slots``."""
        tokens = self.tokenize(text)
        if not tokens:
            return {"tokens": [], "tags": [], "unknown": [], "intent": None, "slots": {}}
        device = next(self.module.parameters()).device
        words = torch.tensor([self.words.encode(tokens)], device=device)
        lengths = torch.tensor([len(tokens)])
        chars = None
        if self.chars is not None:
            chars = pad_chars([encode_chars(tokens, self.chars)]).to(device)
        with torch.inference_mode():
            tag_logits, intent_logits = self.module(words, lengths, chars)
            tags = self.module.decode(self.module.predict_tags(tag_logits), lengths)[0]
            intent = self.intents[int(self.module.predict_intents(intent_logits)[0])]
        return {
            "tokens": tokens,
            "tags": tags,
            "unknown": [t for t in tokens if t not in self.words],
            "intent": intent,
            "slots": slots_of(tokens, tags),
        }


def summary(result: dict[str, Any]) -> str:
    """The one-line JSON of a tagged sentence: its intent and slots."""
    return json.dumps({"intent": result["intent"], "slots": result["slots"]}, ensure_ascii=False)


def tag(cfg: DictConfig, stdin: TextIO | None = None, out: TextIO | None = None) -> list[dict]:
    """Tag ``cfg.text`` (a token table, then JSON) or every line of ``stdin`` (JSON lines)."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    module, checkpoint = load_module(cfg.ckpt_path, data_kind="slot_filling")
    tagger = Tagger(module.to(cfg.device), checkpoint["hyper_parameters"]["vocabs"])
    if cfg.text is not None:
        result = tagger(str(cfg.text))
        width = max((len(t) for t in result["tokens"]), default=0)
        for token, tag_ in zip(result["tokens"], result["tags"]):
            note = (
                f"  ({UNK}: not in the training vocabulary)" if token in result["unknown"] else ""
            )
            out.write(f"{token:<{width}}  {tag_}{note}\n")
        out.write(summary(result) + "\n")
        return [result]
    results = []
    for line in stdin:
        result = tagger(line)
        out.write(summary(result) + "\n")
        out.flush()
        results.append(result)
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="tag")
def main(cfg: DictConfig) -> None:
    """``python scripts/tag.py ckpt_path=<slot-filling checkpoint> [text="..."]``."""
    with errors_reported(log):
        tag(cfg)
