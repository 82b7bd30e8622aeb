"""``data=annotated``: slot filling / NER on annotated text (Rasa, spaCy, Prodigy, Doccano JSON or
JSONL, and what ``scripts/tag.py`` prints), read by :mod:`seqmodels.data.annotated_files`."""

from __future__ import annotations

import logging
from typing import Any

from seqmodels.core.errors import ConfigError, DatasetError
from seqmodels.data.annotated_files import read_annotated
from seqmodels.data.slot_files import SPLITS, Utterance
from seqmodels.data.slot_filling import SlotFillingDataModule
from seqmodels.data.splits import files_by_split, held_out, paths_of

log = logging.getLogger(__name__)


class AnnotatedDataModule(SlotFillingDataModule):
    """The slot-filling DataModule over annotated JSON/JSONL (entities as character spans).

    ``path``: a file, a folder or a list of both (their union). Files named ``train.*``,
    ``valid.*``/``dev.*``/``val.*`` and ``test.*`` feed those splits, any other file trains;
    a split without a file is drawn from the training examples (``valid_fraction``,
    ``test_fraction`` of them, shuffled with ``seed``), so eval from a checkpoint sees the same
    split. Texts without a token are skipped. Examples without an intent get ``-``.
    """

    def __init__(
        self,
        path: Any = None,
        valid_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int | None = 0,
        name: str = "annotated",
        **kwargs: Any,
    ) -> None:
        self.paths = paths_of(path)
        for option, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ConfigError(f"data.{option} must be a number in (0, 1), got {value!r}")
        if valid_fraction + test_fraction >= 1.0:
            raise ConfigError("data.valid_fraction + data.test_fraction must be below 1")
        kwargs.pop("download", None)
        super().__init__(name=name, path=str(self.paths[0]), download=False, **kwargs)
        self.fractions = {"valid": valid_fraction, "test": test_fraction}
        self.seed = 0 if seed is None else int(seed)
        self.read: dict[str, list[Utterance]] = {}

    def prepare_data(self) -> None:
        files_by_split(self.paths)

    def read_split(self, split: str) -> list[Utterance]:
        if not self.read:
            self.read = self.read_all()
        return self.read[split]

    def read_all(self) -> dict[str, list[Utterance]]:
        """Every split: from its files, or held out from train."""
        files = files_by_split(self.paths)
        splits: dict[str, list[Utterance]] = {}
        skipped = 0
        for split, paths in files.items():
            splits[split] = []
            for file in paths:
                utterances, empty = read_annotated(file)
                splits[split] += utterances
                skipped += empty
        missing = {s: f for s, f in self.fractions.items() if not files[s]}
        if missing:
            source = f"data.path={','.join(map(str, self.paths))}"
            splits.update(held_out(splits["train"], missing, self.seed, source))
        for split in SPLITS:
            if not splits[split]:
                raise DatasetError(f"{', '.join(map(str, files[split]))}: no {split} example")
        drawn = ", ".join(f"{s} {f:g} of train (seed {self.seed})" for s, f in missing.items())
        log.info(
            "annotated data: %s%s%s",
            ", ".join(f"{s} {len(splits[s])}" for s in SPLITS),
            f"; held out: {drawn}" if drawn else "",
            f"; skipped {skipped} texts without words" if skipped else "",
        )
        return splits
