"""DataModule for slot filling (+ intent) on the ``seq.in / seq.out / label`` layout."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from seqmodels.core.errors import ConfigError
from seqmodels.data.char_ids import encode_chars, pad_chars
from seqmodels.data.download import ensure_dataset
from seqmodels.data.sampling import split_loader
from seqmodels.data.slot_files import SPLITS, Utterance, read_split
from seqmodels.data.vocab import PAD, UNK, Vocab
from seqmodels.data.word_forms import check_word_forms, word_form, word_forms_of

log = logging.getLogger(__name__)

Batch = dict[str, Any]


def a_few(items: list[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``: a long list cut to a few items and a count (one short line)."""
    head = ", ".join(items[:shown])
    return head if len(items) <= shown else f"{head} and {len(items) - shown} more"


def collate(items: list[Batch]) -> Batch:
    """Pad word and tag ids to the longest utterance; keep gold tag strings for span metrics."""
    return {
        "words": pad_sequence([it["words"] for it in items], batch_first=True),
        "chars": pad_chars([it["chars"] for it in items]),
        "tags": pad_sequence([it["tags"] for it in items], batch_first=True),
        "lengths": torch.tensor([len(it["words"]) for it in items]),
        "intents": torch.tensor([it["intent"] for it in items]),
        "gold_tags": [it["gold_tags"] for it in items],
        "tokens": [it["tokens"] for it in items],
    }


class ReplaceSingletons:
    """The training collate with Lample et al. 2016's singleton replacement: each word seen once
    in the train split becomes ``<unk>`` with probability ``p`` in every batch, so the ``<unk>``
    row learns from words like the unseen ones of dev and test (their characters stay, for the
    char features)."""

    def __init__(self, is_singleton: torch.Tensor, unk_id: int, p: float) -> None:
        self.is_singleton, self.unk_id, self.p = is_singleton, unk_id, p

    def __call__(self, items: list[Batch]) -> Batch:
        batch = collate(items)
        words = batch["words"]
        replace = self.is_singleton[words] & (torch.rand(words.shape) < self.p)
        batch["words"] = words.masked_fill(replace, self.unk_id)
        return batch


class SlotFillingDataModule(L.LightningDataModule):
    """ATIS/SNIPS (or any folder in the same layout) as padded batches.

    Vocabularies come from the train split (words seen ``min_freq`` times; every character of
    a train word, for char features; tags and intents with an UNK entry, so labels unseen in
    train count as errors rather than crash), unless ``vocabs`` (as saved in a checkpoint) are
    given. ``unk_singletons``: the probability that a training word seen once becomes ``<unk>``
    (:class:`ReplaceSingletons`). ``lowercase_words`` and ``zero_digits``: the word vocabulary
    holds words lower-cased and/or with digits as ``0`` (:mod:`seqmodels.data.word_forms`; the
    chars stay as written); a checkpoint's ``vocabs["word_forms"]`` overrides both.
    """

    kind = "slot_filling"

    def __init__(
        self,
        name: str = "atis",
        path: str | None = None,
        data_dir: str = "~/.cache/seqmodels",
        download: bool = True,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        min_freq: int = 1,
        num_workers: int = 0,
        vocabs: dict[str, list[str]] | None = None,
        word_vectors: str | None = None,
        lowercase_vectors: bool = True,
        unk_singletons: float = 0.0,
        lowercase_words: bool = False,
        zero_digits: bool = False,
        bucket: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError("data.batch_size and data.eval_batch_size must be >= 1")
        if min_freq < 1:
            raise ConfigError("data.min_freq must be >= 1")
        if not 0.0 <= unk_singletons <= 1.0:
            raise ConfigError(f"data.unk_singletons must be in [0, 1], got {unk_singletons}")
        self.unk_singletons = float(unk_singletons)
        self.bucket = bool(bucket)
        self.name, self.path, self.data_dir, self.download = name, path, data_dir, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.min_freq, self.num_workers = min_freq, num_workers
        self.word_vectors, self.lowercase_vectors = word_vectors, lowercase_vectors
        self.splits: dict[str, list[Utterance]] = {}
        vocabs = dict(vocabs or {})
        self.word_forms = check_word_forms(
            vocabs.pop("word_forms", word_forms_of(lowercase_words, zero_digits))
        )
        self.vocabs: dict[str, Vocab] = {k: Vocab(v, unk=UNK) for k, v in vocabs.items()}

    @property
    def folder(self) -> Path:
        if self.path is not None:
            return Path(self.path).expanduser()
        return Path(self.data_dir).expanduser() / self.name

    def prepare_data(self) -> None:
        if self.path is None:
            ensure_dataset(self.name, self.data_dir, download=self.download)

    def read_split(self, split: str) -> list[Utterance]:
        """The utterances of ``split`` (train, valid or test); other formats override this."""
        return read_split(self.folder, split)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits = {split: self.read_split(split) for split in SPLITS}
        if not self.vocabs:
            train = self.splits["train"]
            self.vocabs = {
                "words": self.build_words(),
                "tags": Vocab.build((u.tags for u in train), specials=(PAD, UNK)),
                "intents": Vocab.build(([u.intent] for u in train), specials=(UNK,)),
            }
        if "chars" not in self.vocabs:  # checkpoints from before char features have none
            self.vocabs["chars"] = Vocab.build(w for u in self.splits["train"] for w in u.words)
        self._warn_unseen_labels()

    def build_words(self) -> Vocab:
        """Train words seen ``min_freq`` times; with ``word_vectors``, also every word of
        any split that has a vector (the usual practice: a test word the file knows gets its
        pretrained row instead of ``<unk>``; no label of any split is read for this)."""
        words = Vocab.build(self.word_keys("train"), min_freq=self.min_freq)
        if not self.word_vectors:
            return words
        from seqmodels.data.word_vectors import coverage, vectors_for

        every = {w: None for split in SPLITS for keys in self.word_keys(split) for w in keys}
        # <unk> too: the embedding asks for the vocabulary's words and <unk> (a file may have a
        # row for it), and finds them in this one read of the file.
        found = vectors_for(self.word_vectors, [*every, UNK], self.lowercase_vectors)
        for split in SPLITS:
            share = coverage(
                (w for keys in self.word_keys(split) for w in keys), found, self.lowercase_vectors
            )
            log.info(
                "word vectors cover %.1f%% of %s tokens and %.1f%% of its word types (%s)",
                share["tokens"],
                split,
                share["types"],
                self.word_vectors,
            )
        extra = [
            w
            for w in every
            if w not in words and found.lookup(w, self.lowercase_vectors) is not None
        ]
        return Vocab(words.itos + extra, unk=UNK)

    def word_keys(self, split: str) -> list[list[str]]:
        """Each utterance's words of ``split`` in the vocabulary's form."""
        return [[word_form(w, self.word_forms) for w in u.words] for u in self.splits[split]]

    def _warn_unseen_labels(self) -> None:
        """One warning listing the valid/test tags and intents that train never has."""
        unseen = []
        for split in ("valid", "test"):
            utts = self.splits[split]
            for kind, labels in (
                ("tags", {t for u in utts for t in u.tags}),
                ("intents", {u.intent for u in utts}),
            ):
                if missing := sorted(labels - set(self.vocabs[kind].itos)):
                    unseen.append(f"{split} {kind} {a_few(missing)}")
        if unseen:
            log.warning(
                "%s: labels never seen in train map to %s and count as errors: %s",
                self.folder,
                UNK,
                "; ".join(unseen),
            )

    def vocab_kwargs(self) -> dict[str, dict[str, list[str]]]:
        """Vocabularies as plain lists, the keyword the task module (and this class) takes."""
        vocabs: dict[str, list[str]] = {k: list(v.itos) for k, v in self.vocabs.items()}
        if self.word_forms:
            vocabs["word_forms"] = list(self.word_forms)
        return {"vocabs": vocabs}

    def _items(self, split: str) -> list[Batch]:
        words, tags, intents = self.vocabs["words"], self.vocabs["tags"], self.vocabs["intents"]
        return [
            {
                "words": torch.tensor(words.encode(keys)),
                "chars": encode_chars(u.words, self.vocabs["chars"]),
                "tags": torch.tensor(tags.encode(u.tags)),
                "intent": intents.encode([u.intent])[0],
                "gold_tags": u.tags,
                "tokens": u.words,
            }
            for u, keys in zip(self.splits[split], self.word_keys(split), strict=True)
        ]

    def _loader(self, split: str, train: bool) -> DataLoader:
        batch_size = self.batch_size if train else self.eval_batch_size
        return split_loader(self._items(split), train, batch_size, self.num_workers, collate)

    def train_dataloader(self) -> DataLoader:
        if not self.unk_singletons and not self.bucket:
            return self._loader("train", train=True)
        replace = self.singleton_replacement() if self.unk_singletons else collate
        lengths = [len(u.words) for u in self.splits["train"]] if self.bucket else None
        items = self._items("train")
        return split_loader(items, True, self.batch_size, self.num_workers, replace, lengths)

    def singleton_replacement(self) -> ReplaceSingletons:
        """The train collate that replaces the vocabulary's words seen once in train."""
        words = self.vocabs["words"]
        counts = Counter(w for keys in self.word_keys("train") for w in keys)
        is_singleton = torch.zeros(len(words), dtype=torch.bool)
        once = [words.stoi[w] for w, n in counts.items() if n == 1 and w in words.stoi]
        is_singleton[once] = True
        if not once:
            log.warning(
                "data.unk_singletons=%g replaces nothing: no vocabulary word is seen exactly once "
                "in train (data.min_freq=%d already reads such words as <unk>)",
                self.unk_singletons,
                self.min_freq,
            )
        log.info(
            "data.unk_singletons=%g: %d of %d vocabulary words are seen once in train and become "
            "<unk> with that probability in training batches",
            self.unk_singletons,
            len(once),
            len(words),
        )
        return ReplaceSingletons(is_singleton, words.stoi[UNK], self.unk_singletons)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
