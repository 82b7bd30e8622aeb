"""``data=hf`` and ``data=hf_text``: Hugging Face datasets (the optional ``pip install .[hf]``).

``data.dataset`` is a hub id (``tner/wnut2017``; a set in the local cache loads offline with
``HF_DATASETS_OFFLINE=1``) or a folder written by ``save_to_disk`` (read with
``load_from_disk``). ``data.name`` stays a short word: it names the run folder.

- :class:`HFTaggingDataModule` (task=slot_filling): a token column and a tag column (ClassLabel
  ids, whose names come from the features, or tag strings), an optional intent column; the
  dataset's split names map to train/valid/test, a split it lacks is held out from train.
- :class:`HFTextDataModule` (task=char_lm): one text column of one split, written once to a text
  file in the token cache (keyed by the dataset's fingerprint), which the char LM then reads as
  it reads any text file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from seqmodels.core.errors import ConfigError, DatasetError
from seqmodels.data.char_lm import CharLMDataModule
from seqmodels.data.conll_files import NO_LABEL, iob1_to_iob2
from seqmodels.data.slot_files import SPLITS, Utterance, check_bio
from seqmodels.data.slot_filling import SlotFillingDataModule
from seqmodels.data.splits import held_out

log = logging.getLogger(__name__)

TAG_COLUMNS = ("ner_tags", "tags", "slot_labels", "labels", "bio_tags")
INSTALL = "pip install '.[hf]' (or pip install datasets)"


def load(dataset: Any, subset: str | None = None) -> Any:
    """A ``DatasetDict`` (or ``Dataset``): ``load_from_disk`` for a saved folder, else the hub."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"data.dataset= needs the datasets package: {INSTALL}") from None
    if not dataset:
        raise ConfigError("data.dataset= is required: a Hugging Face hub id or a saved folder")
    folder = Path(str(dataset)).expanduser()
    saved = ("dataset_dict.json", "state.json")
    try:
        if folder.is_dir() and any((folder / name).is_file() for name in saved):
            return datasets.load_from_disk(str(folder))
        return datasets.load_dataset(str(dataset), subset)
    except Exception as err:  # network, cache, missing files: all the user's to fix
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DatasetError(
            f"data.dataset={dataset}: cannot load it ({type(err).__name__}: {first}); give a "
            "folder written by save_to_disk, or a hub id (offline: one already in the cache, "
            "with HF_DATASETS_OFFLINE=1)"
        ) from err


def column(ds: Any, name: str, option: str, where: str) -> Any:
    """The feature of column ``name``, or an error naming the option and the columns there."""
    if name not in ds.features:
        raise DatasetError(
            f"{where} has no column {name!r} ({option}=); its columns: {', '.join(ds.features)}"
        )
    return ds.features[name]


def label_names(feature: Any) -> list[str] | None:
    """ClassLabel names of a feature (or of its items, for a list feature); None for strings."""
    feature = getattr(feature, "feature", feature)
    return list(feature.names) if hasattr(feature, "names") else None


def name_of(names: list[str], value: Any, where: str, row: int, column: str) -> str:
    """``names[value]`` for a ClassLabel id; -1 (no label) or any other id outside the names is
    an error (Python would read a negative id from the end)."""
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    raise DatasetError(
        f"{where} row {row}: {column} id {value!r} is not a class id: there are {len(names)} "
        f"names (0 to {len(names) - 1}); -1 means no label in Hugging Face sets"
    )


class HFTaggingDataModule(SlotFillingDataModule):
    """Token classification from a Hugging Face dataset, as slot-filling utterances."""

    def __init__(
        self,
        dataset: str | None = None,
        subset: str | None = None,
        splits: dict[str, str] | None = None,
        tokens_column: str = "tokens",
        tags_column: str | None = None,
        intent_column: str | None = None,
        valid_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int | None = 0,
        name: str = "hf",
        **kwargs: Any,
    ) -> None:
        if not dataset:
            raise ConfigError("data=hf needs data.dataset=<hub id or save_to_disk folder>")
        kwargs.pop("download", None)
        kwargs.pop("path", None)
        super().__init__(name=name, path=str(dataset), download=False, **kwargs)
        self.dataset, self.subset = dataset, subset
        self.split_names = {"train": "train", "valid": "validation", "test": "test"}
        self.split_names |= dict(splits or {})
        self.tokens_column, self.tags_column = tokens_column, tags_column
        self.intent_column = intent_column
        self.fractions = {"valid": valid_fraction, "test": test_fraction}
        self.seed = 0 if seed is None else int(seed)
        self.read: dict[str, list[Utterance]] = {}

    def prepare_data(self) -> None:
        load(self.dataset, self.subset)  # downloads into the HF cache once, or fails here

    def read_split(self, split: str) -> list[Utterance]:
        if not self.read:
            self.read = self.read_all()
        return self.read[split]

    def read_all(self) -> dict[str, list[Utterance]]:
        loaded = load(self.dataset, self.subset)
        parts = dict(loaded) if hasattr(loaded, "keys") else {"train": loaded}
        found = {s: parts[n] for s, n in self.split_names.items() if n in parts}
        if "train" not in found:
            raise DatasetError(
                f"data.dataset={self.dataset} has no split {self.split_names['train']!r} "
                f"(data.splits.train=); its splits: {', '.join(parts)}"
            )
        splits = {split: self.utterances(ds, split) for split, ds in found.items()}
        missing = {s: f for s, f in self.fractions.items() if s not in found}
        if missing:
            source = f"data.dataset={self.dataset}"
            splits.update(held_out(splits["train"], missing, self.seed, source))
        log.info("%s: %s", self.dataset, ", ".join(f"{s} {len(splits[s])}" for s in SPLITS))
        return splits

    def utterances(self, ds: Any, split: str) -> list[Utterance]:
        where = f"{self.dataset}[{self.split_names[split]}]"
        column(ds, self.tokens_column, "data.tokens_column", where)
        tags_column = self.tags_column or next((c for c in TAG_COLUMNS if c in ds.features), None)
        if tags_column is None:
            raise DatasetError(
                f"{where}: no tag column ({', '.join(TAG_COLUMNS)}); set data.tags_column= "
                f"(its columns: {', '.join(ds.features)})"
            )
        tag_names = label_names(column(ds, tags_column, "data.tags_column", where))
        intent_names = None
        if self.intent_column:
            feature = column(ds, self.intent_column, "data.intent_column", where)
            intent_names = label_names(feature)
        utterances, opened_by_i = [], 0
        for row, example in enumerate(ds, start=1):
            words = [str(w) for w in example[self.tokens_column]]
            tags = [
                name_of(tag_names, t, where, row, tags_column) if tag_names else str(t)
                for t in example[tags_column]
            ]
            if len(words) != len(tags):
                raise DatasetError(
                    f"{where} row {row}: {len(tags)} tags ({tags_column}) for {len(words)} tokens"
                )
            if not words:
                continue
            for tag in tags:
                check_bio(tag, Path(where), row)
            fixed = iob1_to_iob2(tags) if all(t[0] in "BIO" for t in tags) else tags
            opened_by_i += fixed != tags
            intent = NO_LABEL
            if self.intent_column:
                value = example[self.intent_column]
                if intent_names:
                    intent = name_of(intent_names, value, where, row, self.intent_column)
                else:
                    intent = str(value)
            utterances.append(Utterance(words, fixed, intent))
        if opened_by_i:
            log.warning("%s: %d rows open chunks with I- (IOB1); read as B-", where, opened_by_i)
        return utterances


class HFTextDataModule(CharLMDataModule):
    """A char LM on one text column of a Hugging Face dataset (rows joined by newlines)."""

    def __init__(
        self,
        dataset: str | None = None,
        subset: str | None = None,
        split: str = "train",
        text_column: str = "text",
        name: str = "hf_text",
        **kwargs: Any,
    ) -> None:
        if not dataset:
            raise ConfigError("data=hf_text needs data.dataset=<hub id or save_to_disk folder>")
        kwargs.pop("download", None)
        kwargs.pop("path", None)
        super().__init__(name=name, download=False, **kwargs)
        self.dataset, self.subset = dataset, subset
        self.split, self.text_column = split, text_column

    def text_file(self) -> Path:
        """The column's text as a UTF-8 file in the token cache, written on first use."""
        loaded = load(self.dataset, self.subset)
        if hasattr(loaded, "keys"):
            if self.split not in loaded:
                raise DatasetError(
                    f"data.dataset={self.dataset} has no split {self.split!r} (data.split=); "
                    f"its splits: {', '.join(loaded)}"
                )
            loaded = loaded[self.split]
        feature = column(loaded, self.text_column, "data.text_column", str(self.dataset))
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise DatasetError(f"{self.dataset}: column {self.text_column!r} is not text")
        safe = re.sub(r"[^A-Za-z0-9._-]", "-", str(self.dataset)).strip("-")
        path = self.tokens_dir / f"hf-{safe}-{self.split}-{loaded._fingerprint}.txt"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "w", encoding="utf-8") as f:
                for text in loaded[self.text_column]:
                    if text:
                        f.write(text.rstrip("\n") + "\n")
            tmp.replace(path)
            log.info("wrote %s (%s[%s].%s)", path, self.dataset, self.split, self.text_column)
        return path

    def prepare_data(self) -> None:
        self.path = str(self.text_file())
        super().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.path is None:
            self.path = str(self.text_file())
        super().setup(stage)
