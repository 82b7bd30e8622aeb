"""Every bad input gets a clear error naming the option, file, line or step (issue 5).

The CLI tests run ``scripts/train.py`` in a subprocess: an expected error prints its message
without a traceback and exits 1. The rest call ``train(cfg)`` in-process on tiny files.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import DATA_DIR, REPO, run_train_cli
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from seqmodels.commands.train import build_module, train
from seqmodels.core.errors import ConfigError, DatasetError, UserError
from seqmodels.data.vocab import UNK
from seqmodels.tasks import CausalEncoderRequired

pytestmark = pytest.mark.usefixtures("one_thread")

# Each split: (words, BIO tags, intent) per line.
TRAIN = [
    ("show flights to boston", "O O O B-city", "flight"),
    ("flights from denver to boston", "O O B-city O B-city", "flight"),
    ("what is the fare to denver", "O O O O O B-city", "airfare"),
    ("cheapest fare from boston", "O O O B-city", "airfare"),
]


def write_split(folder: Path, rows: list[tuple[str, str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, column in (("seq.in", 0), ("seq.out", 1), ("label", 2)):
        (folder / name).write_text("".join(row[column] + "\n" for row in rows), encoding="utf-8")


def slot_folder(root: Path, valid=TRAIN, test=TRAIN) -> Path:
    """A tiny dataset in the ATIS layout under ``root``."""
    for split, rows in (("train", TRAIN), ("valid", valid), ("test", test)):
        write_split(root / split, rows)
    return root


def assert_short_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout


# --- through the real command line -------------------------------------------------------


def test_cli_unknown_option_lists_the_available_ones(tmp_path: Path) -> None:
    # (model=foo: tests/test_cli.py)
    result = run_train_cli("data=bar", cwd=tmp_path)
    assert_short_error(result, "Could not find 'data/bar'", "Available options in 'data'", "snips")
    assert not (tmp_path / "outputs").exists()


def test_cli_multirun_reports_the_failing_job_and_runs_the_others(tmp_path: Path) -> None:
    # Job 1 asks for a bidirectional char LM: refused before training, with the reason.
    text = tmp_path / "text.txt"
    text.write_text("a tiny text to model, one character at a time. " * 20, encoding="utf-8")
    result = run_train_cli(
        "-m",
        "task=char_lm",
        f"data.path={text}",
        "data.block_size=8",
        "model.hidden_size=8",
        "model.embedding_dim=8",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "logger=none",
        "callbacks=none",
        "model=lstm,bilstm",
        f"hydra.sweep.dir={tmp_path}/sweep",
        cwd=tmp_path,
    )
    assert_short_error(
        result,
        "Error executing job with overrides: ['task=char_lm'",
        "'model=bilstm']",
        "model=bilstm is bidirectional, but task=char_lm predicts each character from the ones "
        "before it",
    )
    jobs = {p.name.split("_")[0]: p for p in (tmp_path / "sweep").iterdir() if p.is_dir()}
    assert "test/bpc" in (jobs["0"] / "train.log").read_text()  # job 0 ran
    assert "bidirectional" in (jobs["1"] / "train.log").read_text()
    assert not (jobs["1"] / "checkpoints").exists()


def test_cli_missing_data_folder_names_it_and_how_to_provide_it(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    result = run_train_cli(f"data.path={missing}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert_short_error(result, f"{missing} does not exist", "data.path=")


# --- configuration -------------------------------------------------------------------------


def test_unknown_data_option_lists_the_available_ones(cfg_factory) -> None:
    with pytest.raises(ConfigCompositionException, match="Could not find 'data/bar'") as err:
        cfg_factory("data=bar")
    assert "atis" in str(err.value) and "tinyshakespeare" in str(err.value)


def test_bidirectional_char_lm_is_refused_before_reading_data(cfg_factory, tmp_path) -> None:
    cfg = cfg_factory("task=char_lm", "model=hand_bilstm", f"data.path={tmp_path}/missing.txt")
    with pytest.raises(CausalEncoderRequired, match="model=hand_bilstm is bidirectional"):
        train(cfg)  # the missing file is never looked at
    assert isinstance(CausalEncoderRequired("x"), UserError)


@pytest.mark.parametrize(
    ("override", "option"),
    [
        ("model.hidden_size=0", "model.hidden_size"),
        ("model.embedding_dim=-3", "model.embedding_dim"),
        ("model.num_layers=1.5", "model.num_layers"),
        ("model.dropout=1.5", "model.dropout"),
        ("model.dropout=-0.1", "model.dropout"),
        ("model.cell=mamba", "model.cell"),
        ("trainer.max_epochs=-1", "trainer.max_epochs"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.min_freq=0", "data.min_freq"),
        ("task.module.optimizer.lr=0", "task.module.optimizer.lr"),
        ("seed=abc", "seed"),
    ],
)
def test_invalid_numbers_name_the_option(cfg_factory, tmp_path, override, option) -> None:
    cfg = cfg_factory(override, f"data.path={tmp_path}/never_read")
    with pytest.raises(ConfigError, match=rf"^{option} must be"):
        train(cfg)


@pytest.mark.parametrize(
    ("override", "option"),
    [("data.block_size=0", "data.block_size"), ("data.val_fraction=1.0", "data.val_fraction")],
)
def test_invalid_char_lm_numbers_name_the_option(cfg_factory, tmp_path, override, option) -> None:
    cfg = cfg_factory("task=char_lm", override, f"data.path={tmp_path}/never_read.txt")
    with pytest.raises(ConfigError, match=rf"^{option} must be"):
        train(cfg)


# --- data files ------------------------------------------------------------------------------


def read_error(cfg_factory, folder: Path) -> str:
    with pytest.raises(DatasetError) as err:
        train(cfg_factory(f"data.path={folder}"))
    return str(err.value)


def test_missing_split_file_is_named_with_the_layout(cfg_factory, tmp_path: Path) -> None:
    folder = slot_folder(tmp_path / "data")
    (folder / "valid" / "label").unlink()
    message = read_error(cfg_factory, folder)
    assert message.startswith(f"{folder}/valid/label does not exist")
    assert "seq.in" in message and "data.path=" in message


def test_missing_split_folder_is_named(cfg_factory, tmp_path: Path) -> None:
    folder = slot_folder(tmp_path / "data")
    for file in (folder / "test").iterdir():
        file.unlink()
    (folder / "test").rmdir()
    assert read_error(cfg_factory, folder).startswith(f"{folder}/test does not exist")


def test_empty_file_is_named(cfg_factory, tmp_path: Path) -> None:
    folder = slot_folder(tmp_path / "data")
    (folder / "train" / "seq.out").write_text("")
    assert read_error(cfg_factory, folder) == f"{folder}/train/seq.out is empty"


def test_missing_cached_dataset_says_where_to_get_it(cfg_factory, tmp_path: Path) -> None:
    cfg = cfg_factory(f"paths.data_dir={tmp_path}/cache")  # data.download=false in tests
    with pytest.raises(DatasetError, match="atis/train/seq.in is missing; download it from https"):
        train(cfg)


def test_token_counts_that_differ_name_file_and_line(cfg_factory, tmp_path: Path) -> None:
    folder = slot_folder(tmp_path / "data")
    lines = (folder / "train" / "seq.out").read_text().splitlines()
    lines[2] += " O"
    (folder / "train" / "seq.out").write_text("\n".join(lines) + "\n")
    assert read_error(cfg_factory, folder).startswith(
        f"{folder}/train/seq.out:3: 7 tags for 6 tokens in {folder}/train/seq.in:3"
    )


def test_label_count_that_differs_names_file_and_line(cfg_factory, tmp_path: Path) -> None:
    folder = slot_folder(tmp_path / "data")
    (folder / "test" / "label").write_text("flight\nflight\nairfare\n")
    assert read_error(cfg_factory, folder).startswith(
        f"{folder}/test/label:4: missing: label has 3 lines, {folder}/test/seq.in has 4"
    )


def test_line_separators_inside_a_token_do_not_split_lines(cfg_factory, tmp_path: Path) -> None:
    # str.splitlines() would split at U+2028 and U+0085 (whitespace between tokens, for
    # str.split()) and pair each later line with the wrong tags; files split at newlines only.
    folder = slot_folder(tmp_path / "data")
    (folder / "train" / "seq.in").write_text(
        "show flights to\u2028boston\nflights from\x85denver to boston\n"
        "what is the fare to denver\ncheapest fare from boston\n",
        encoding="utf-8",
    )
    train(cfg_factory(f"data.path={folder}", "test=false"))


def test_malformed_bio_tag_is_named_with_file_and_line(cfg_factory, tmp_path: Path) -> None:
    rows = [*TRAIN[:1], ("flights to denver", "O O city", "flight")]
    folder = slot_folder(tmp_path / "data", valid=rows)
    assert read_error(cfg_factory, folder).startswith(
        f"{folder}/valid/seq.out:2: tag 'city' is not BIO"
    )


def test_inside_tag_after_outside_is_legal_as_in_conlleval(cfg_factory, tmp_path: Path) -> None:
    rows = [("show flights to boston", "O O O I-city", "flight")]
    folder = slot_folder(tmp_path / "data", valid=rows)
    metrics = train(cfg_factory(f"data.path={folder}", "test=false"))
    assert "val/f1" in metrics


def test_non_utf8_file_names_the_byte_offset(cfg_factory, tmp_path: Path) -> None:
    folder = slot_folder(tmp_path / "data")
    (folder / "train" / "seq.in").write_bytes(b"show flights to boston\ncaf\xe9 near denver\n")
    assert read_error(cfg_factory, folder) == (
        f"{folder}/train/seq.in is not UTF-8 text: invalid byte 0xe9 at byte offset 26"
    )


def test_char_lm_text_that_is_only_whitespace_is_refused(cfg_factory, tmp_path: Path) -> None:
    text = tmp_path / "blank.txt"
    text.write_text(" \n\n \t\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"^{text} is only whitespace \(6 bytes\)$"):
        train(cfg_factory("task=char_lm", f"data.path={text}"))


def test_char_lm_missing_text_says_how_to_provide_one(cfg_factory, tmp_path: Path) -> None:
    text = tmp_path / "missing.txt"
    with pytest.raises(DatasetError, match=rf"^{text} does not exist; set data.path= to a UTF-8"):
        train(cfg_factory("task=char_lm", f"data.path={text}"))


# --- labels never seen in train ------------------------------------------------------------


UNSEEN = [
    ("book a hotel in boston", "O O B-hotel O B-city", "hotel"),
    ("hotel in denver", "B-hotel O B-city", "hotel"),
]


def test_unseen_labels_are_unk_warned_once_and_counted_wrong(cfg_factory, tmp_path, caplog):
    folder = slot_folder(tmp_path / "data", valid=UNSEEN, test=UNSEEN)
    cfg = cfg_factory(f"data.path={folder}")
    with caplog.at_level(logging.WARNING, logger="seqmodels"):
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        datamodule.setup("test")
    warnings = [r.getMessage() for r in caplog.records if "never seen in train" in r.getMessage()]
    assert warnings == [
        f"{folder}: labels never seen in train map to {UNK} and count as errors: "
        "valid tags B-hotel; valid intents hotel; test tags B-hotel; test intents hotel"
    ]

    module = build_module(cfg, datamodule)
    with torch.no_grad():  # make UNK the model's favourite intent and tag: still never predicted
        module.intent_head.bias[module.hparams.vocabs["intents"].index(UNK)] = 1e4
        module.tag_head.bias[module.tag_names.index(UNK)] = 1e4
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    assert metrics["test/intent_acc"] == 0.0  # every gold intent is UNK: all wrong
    assert metrics["test/recall"] < 100.0  # the B-hotel spans are never found


# --- run folders ----------------------------------------------------------------------------


def test_cli_runs_started_together_get_folders_of_their_own(tmp_path: Path) -> None:
    env = {**os.environ, "SEQMODELS_DATA_DIR": str(DATA_DIR)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "train.py"), f"data.path={tmp_path}/{name}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("first", "second")
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 1  # both fail fast: no such data folder
    runs = sorted((tmp_path / "outputs" / "slot_filling" / "runs").iterdir())
    # The folder name ends in the process id, so it is unique even within one microsecond.
    assert sorted(run.name.rsplit("_", 1)[1] for run in runs) == sorted(str(p.pid) for p in procs)
    logs = [(run / "train.log").read_text() for run in runs]
    named = sorted(name for name in ("first", "second") for log in logs if f"/{name} does" in log)
    assert named == ["first", "second"]  # each run's log holds its own error only
