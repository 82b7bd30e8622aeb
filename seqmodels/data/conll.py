"""``data=conll``: sequence labelling (NER, chunking, slots) on a folder of CoNLL column files."""

from __future__ import annotations

from typing import Any

from seqmodels.core.errors import ConfigError, DatasetError
from seqmodels.data.conll_files import SCHEMES, iob2_to_iobes, read_conll
from seqmodels.data.slot_files import Utterance
from seqmodels.data.slot_filling import SlotFillingDataModule

ENCODINGS = (None, "IOBES")
DEFAULT_FILES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}


def check_conll_options(path: str | None, scheme: str, encoding: str | None = None) -> None:
    """``data.path`` is given, ``data.scheme`` and ``data.encoding`` are known (before
    anything is read)."""
    if path is None:
        raise ConfigError(
            "data=conll needs data.path=<folder> holding "
            + ", ".join(DEFAULT_FILES.values())
            + " (or set data.files.train=... data.files.valid=... data.files.test=...)"
        )
    if str(scheme).upper() not in SCHEMES:
        raise ConfigError(f"data.scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if encoding not in ENCODINGS:
        raise ConfigError(f"data.encoding must be null or IOBES, got {encoding!r}")


class ConllDataModule(SlotFillingDataModule):
    """The slot-filling DataModule over ``<path>/{train,valid,test}`` CoNLL files.

    ``files`` maps ``train``/``valid``/``test`` to file names in ``path`` (e.g.
    ``eng.train``/``eng.testa``/``eng.testb`` for CoNLL-2003); ``scheme``, ``tag_column`` and
    ``label_key`` go to :func:`seqmodels.data.conll_files.read_conll`. ``encoding="IOBES"``
    rewrites BIO/IOB1 tags as IOBES (``E-x`` ends a chunk, ``S-x`` is a one-token chunk), so
    the tagger learns and decodes IOBES, as Lample et al. 2016 do; the spans, hence span F1,
    are the same. Sentences without a
    ``# label = ...`` line get the label ``-`` (the intent head then has one class).
    """

    def __init__(
        self,
        path: str | None = None,
        files: dict[str, str] | None = None,
        scheme: str = "BIO",
        tag_column: int = -1,
        label_key: str | None = "label",
        name: str = "conll",
        encoding: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_conll_options(path, scheme, encoding)
        kwargs.pop("download", None)
        super().__init__(name=name, path=path, download=False, **kwargs)
        self.files = {**DEFAULT_FILES, **(files or {})}
        self.scheme, self.tag_column, self.label_key = scheme, tag_column, label_key
        self.encoding = encoding

    def prepare_data(self) -> None:
        if not self.folder.is_dir():
            raise DatasetError(f"data.path={self.folder} does not exist or is not a folder")

    def read_split(self, split: str) -> list[Utterance]:
        path = self.folder / self.files[split]
        if not path.is_file() and self.folder.is_dir():
            there = sorted(p.name for p in self.folder.iterdir() if p.is_file())
            shown = ", ".join(there[:12]) + (", ..." if len(there) > 12 else "")
            raise DatasetError(
                f"data.path={self.folder} has no {self.files[split]} (data.files.{split}="
                f"{self.files[split]}); set data.files.{split}=<a file there> (it holds: "
                f"{shown or 'no files'})"
            )
        sentences = read_conll(path, self.scheme, self.tag_column, self.label_key)
        if self.encoding == "IOBES" and SCHEMES[self.scheme.upper()] == "BI":
            sentences = [Utterance(s.words, iob2_to_iobes(s.tags), s.intent) for s in sentences]
        return sentences
