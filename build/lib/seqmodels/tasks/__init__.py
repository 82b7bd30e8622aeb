"""LightningModules, one per task; each drives whichever encoder `model=` picks."""

from seqmodels.tasks.char_lm import CausalEncoderRequired, CharLM
from seqmodels.tasks.long_range import LongRange
from seqmodels.tasks.slot_filling import SlotTagger

__all__ = ["CausalEncoderRequired", "CharLM", "LongRange", "SlotTagger"]
