"""Datasets: pinned downloads, vocabularies and one DataModule per task."""

from seqmodels.data.char_lm import CharLMDataModule
from seqmodels.data.conll import ConllDataModule
from seqmodels.data.download import DatasetError, ensure_dataset
from seqmodels.data.long_range import LongRangeDataModule
from seqmodels.data.slot_filling import SlotFillingDataModule
from seqmodels.data.vocab import Vocab

__all__ = [
    "CharLMDataModule",
    "ConllDataModule",
    "DatasetError",
    "SlotFillingDataModule",
    "Vocab",
    "ensure_dataset",
    "LongRangeDataModule",
]
