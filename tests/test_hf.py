"""data=hf and data=hf_text on Hugging Face datasets built in the test (never the network)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, single_thread

from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError, DatasetError
from seqmodels.data.hf import HFTaggingDataModule, HFTextDataModule, load

datasets = pytest.importorskip("datasets")

NAMES = ["O", "B-PER", "I-PER", "B-LOC"]


def tagging_set(folder: Path, with_valid: bool = True) -> Path:
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NAMES)),
            "intent": datasets.ClassLabel(names=["travel", "chat"]),
        }
    )
    rows = {
        "id": [str(i) for i in range(24)],
        "tokens": [["Anna", "Smith", "flies", "to", "Rome"], ["hi", "there"]] * 12,
        "ner_tags": [[1, 2, 0, 0, 3], [0, 0]] * 12,
        "intent": [0, 1] * 12,
    }
    train_set = datasets.Dataset.from_dict(rows, features=features)
    parts = {"train": train_set, "test": train_set.select(range(4))}
    if with_valid:
        parts["validation"] = train_set.select(range(4, 8))
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    return folder


def test_class_label_tags_and_intents_are_read_by_name(tmp_path: Path) -> None:
    dm = HFTaggingDataModule(dataset=str(tagging_set(tmp_path / "ds")), intent_column="intent")
    dm.setup()
    first = dm.splits["train"][0]
    assert first.words == ["Anna", "Smith", "flies", "to", "Rome"]
    assert first.tags == ["B-PER", "I-PER", "O", "O", "B-LOC"]
    assert (first.intent, dm.splits["train"][1].intent) == ("travel", "chat")
    assert [len(dm.splits[s]) for s in ("train", "valid", "test")] == [24, 4, 4]


def test_string_tags_renamed_columns_and_a_missing_split_held_out(tmp_path: Path) -> None:
    rows = {"words": [["a", "Bob"], ["c"]] * 10, "labels_bio": [["O", "B-PER"], ["O"]] * 10}
    datasets.DatasetDict({"training": datasets.Dataset.from_dict(rows)}).save_to_disk(
        str(tmp_path / "ds")
    )
    dm = HFTaggingDataModule(
        dataset=str(tmp_path / "ds"),
        splits={"train": "training"},
        tokens_column="words",
        tags_column="labels_bio",
        seed=1,
    )
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "valid", "test")] == [16, 2, 2]
    assert {u.intent for u in dm.splits["train"]} == {"-"}
    with pytest.raises(DatasetError, match=r"no column 'tokens' \(data.tokens_column=\)"):
        HFTaggingDataModule(dataset=str(tmp_path / "ds"), splits={"train": "training"}).setup()
    with pytest.raises(DatasetError, match="no split 'train'.*its splits: training"):
        HFTaggingDataModule(dataset=str(tmp_path / "ds")).setup()
    with pytest.raises(ConfigError, match="data.dataset="):
        HFTaggingDataModule(dataset=None)


def test_a_missing_datasets_package_is_one_line_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # what an uninstalled package gives
    with pytest.raises(ConfigError, match=r"pip install '\.\[hf\]'"):
        load("some/set")


def test_slot_tagger_trains_on_a_saved_dataset(tmp_path: Path, monkeypatch) -> None:
    folder = tagging_set(tmp_path / "ds")
    monkeypatch.chdir(tmp_path)  # data.dataset=ds: a folder relative to where train.py started
    overrides = ["data=hf", "data.dataset=ds", "data.intent_column=intent", "logger=none"]
    with single_thread():
        metrics = train(make_cfg(tmp_path / "run", *overrides))
    assert {"test/f1", "test/intent_acc"} <= set(metrics)
    # The checkpoint's config names the folder absolutely: eval.py finds it from any folder.
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["config"]["data"]["dataset"] == str(folder)


def test_char_lm_trains_on_a_text_column(tmp_path: Path, monkeypatch) -> None:
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog." for i in range(400)]
    ds = datasets.Dataset.from_dict({"content": lines, "n": list(range(400))})
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "ds"))
    dm = HFTextDataModule(
        dataset=str(tmp_path / "ds"), text_column="content", cache_dir=str(tmp_path / "cache")
    )
    path = dm.text_file()
    assert path.read_text(encoding="utf-8") == "".join(line + "\n" for line in lines)
    assert dm.text_file() == path  # cached by the dataset's fingerprint
    with pytest.raises(DatasetError, match="column 'n' is not text"):
        HFTextDataModule(dataset=str(tmp_path / "ds"), text_column="n").text_file()
    overrides = [
        *("task=char_lm", "model=lstm", "data=hf_text", "data.dataset=ds"),
        *("data.text_column=content", f"data.cache_dir={tmp_path / 'cache'}", "logger=none"),
        *("data.block_size=32", "data.batch_size=8", "data.eval_streams=4", "data.eval_window=32"),
    ]
    monkeypatch.chdir(tmp_path)
    with single_thread():
        metrics = train(make_cfg(tmp_path / "run", *overrides))
    assert metrics["test/bpc"] > 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, weights_only=True)["config"]["data"]["dataset"]
    assert stored == str(tmp_path / "ds")


@pytest.mark.parametrize("column", ["ner_tags", "intent"])
def test_a_no_label_id_is_refused_not_read_as_the_last_name(tmp_path: Path, column: str) -> None:
    """-1 is "no label" in Hugging Face sets (ClassLabel accepts it); Python's negative indexing
    would read it as the last class."""
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NAMES)),
            "intent": datasets.ClassLabel(names=["travel", "chat"]),
        }
    )
    rows = {"tokens": [["hi", "Anna"]] * 20, "ner_tags": [[0, 1]] * 20, "intent": [0] * 20}
    test = {"tokens": [["hi", "Bob"]] * 2, "ner_tags": [[0, 1], [0, 1]], "intent": [1, 1]}
    if column == "ner_tags":
        test["ner_tags"][1] = [0, -1]
    else:
        test["intent"][1] = -1
    parts = {
        "train": datasets.Dataset.from_dict(rows, features=features),
        "test": datasets.Dataset.from_dict(test, features=features),
    }
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "ds"))
    dm = HFTaggingDataModule(dataset=str(tmp_path / "ds"), intent_column="intent")
    count = len(NAMES) if column == "ner_tags" else 2
    with pytest.raises(DatasetError) as err:
        dm.setup()
    assert str(err.value) == (
        f"{tmp_path / 'ds'}[test] row 2: {column} id -1 is not a class id: "
        f"there are {count} names (0 to {count - 1}); -1 means no label in Hugging Face sets"
    )


def test_a_hub_id_stays_as_it_is(tmp_path: Path, monkeypatch) -> None:
    from seqmodels.plumbing.config_checks import absolute_data_paths

    monkeypatch.chdir(tmp_path)
    cfg = make_cfg(tmp_path / "run", "data=hf", "data.dataset=tner/wnut2017")
    absolute_data_paths(cfg)
    assert cfg.data.dataset == "tner/wnut2017"


def test_too_few_rows_to_hold_out_name_the_dataset_and_the_options(tmp_path: Path) -> None:
    rows = {"tokens": [["Anna", "sings"]], "ner_tags": [["B-PER", "O"]]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DatasetError) as err:
        HFTaggingDataModule(dataset=str(tmp_path / "one")).setup()
    assert str(err.value) == (
        f"data.dataset={tmp_path / 'one'}: 1 training examples are too few to hold out 1 for "
        "valid and 1 for test (data.valid_fraction / data.test_fraction, at least 1 each); give "
        "more examples, or valid and test examples of their own"
    )
