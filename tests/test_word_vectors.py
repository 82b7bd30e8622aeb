"""model.word_vectors: GloVe / word2vec / fastText files (text, .vec, gzip, word2vec binary),
streamed for the vocabulary's words; a self-contained checkpoint; clear errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch
from conftest import make_cfg
from test_eval import eval_cfg

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.tag import Tagger
from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError, DatasetError
from seqmodels.data.word_vectors import coverage, read_word_vectors
from seqmodels.nets import load_net

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "conll_ner"
ROWS = {"the": [0.5, -1.0, 2.0], "york": [1.0, 2.0, 3.0], "Germany": [0.25, 0.0, -4.5]}


def glove_text(rows: dict[str, list[float]]) -> str:
    return "".join(f"{w} {' '.join(repr(v) for v in vs)}\n" for w, vs in rows.items())


def write_formats(folder: Path, rows: dict[str, list[float]]) -> dict[str, Path]:
    """The same vectors as GloVe text, word2vec/fastText text (.vec), gzip and w2v binary."""
    dim = len(next(iter(rows.values())))
    paths = {
        "glove": folder / "glove.txt",
        "vec": folder / "wiki.vec",
        "gzip": folder / "glove.txt.gz",
        "binary": folder / "vectors.bin",
    }
    paths["glove"].write_text(glove_text(rows))
    paths["vec"].write_text(f"{len(rows)} {dim}\n" + glove_text(rows))
    paths["gzip"].write_bytes(gzip.compress(paths["vec"].read_bytes()))
    with open(paths["binary"], "wb") as f:
        f.write(f"{len(rows)} {dim}\n".encode())
        for word, values in rows.items():
            f.write(word.encode() + b" " + struct.pack(f"<{dim}f", *values) + b"\n")
    return paths


@pytest.mark.parametrize("kind", ["glove", "vec", "gzip", "binary"])
def test_each_format_gives_the_wanted_rows(tmp_path: Path, kind: str) -> None:
    path = write_formats(tmp_path, ROWS)[kind]
    found = read_word_vectors(path, ["the", "York", "unknown"])
    assert found.dim == 3
    assert set(found.vectors) == {"the", "york"}  # only wanted words (and lower-cased forms)
    torch.testing.assert_close(found.lookup("York"), torch.tensor(ROWS["york"]))
    assert found.lookup("York", lowercase=False) is None
    share = coverage(["the", "the", "York", "unknown"], found)
    assert share == {"tokens": 75.0, "types": pytest.approx(200 / 3)}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("the 1 2 3\nyork 1 2\n", 2, "3 fields, expected a word and 3 numbers"),
        ("2 3\nthe 1 2 3\nyork 1 x 3\n", 3, "could not convert string to float: 'x'"),
        ("2 3\nthe 1 2 3\n\nyork 1\n", 4, "2 fields, expected a word and 3 numbers"),
    ],
)
def test_a_malformed_line_is_named_by_file_and_number(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=rf"bad\.txt:{line}: {message}"):
        read_word_vectors(path, ["the", "york"])


def tagger_run(tmp_path: Path, vectors: Path, *overrides: str) -> Path:
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    cfg = make_cfg(
        run,
        "data=conll",
        f"data.path={FIXTURE}",
        "data.batch_size=2",
        "data.min_freq=2",
        "model.embedding_dim=3",
        f"model.word_vectors.path={vectors}",
        "logger=none",
        *overrides,
    )
    train(cfg)
    return next((run / "checkpoints").glob("epoch_*.ckpt"))


def test_frozen_vectors_train_into_a_checkpoint_that_needs_no_vectors_file(
    tmp_path: Path, one_thread
) -> None:
    vectors = write_formats(tmp_path, ROWS)["gzip"]
    ckpt = tagger_run(tmp_path, vectors, "model.word_vectors.freeze=true")
    vectors.unlink()
    saved = torch.load(ckpt, weights_only=True)
    words = saved["hyper_parameters"]["vocabs"]["words"]
    options = saved["hyper_parameters"]["model"]["word_vectors"]
    assert options["dim"] == 3 and options["freeze"] is True
    table = saved["state_dict"]["embedding.table.weight"]
    # "Germany" appears once in train (below min_freq=2) but has a vector: it is kept, and
    # "York" (train) takes the row of "york"; both rows are the file's, unchanged (frozen).
    for word, source in (("Germany", "Germany"), ("York", "york")):
        assert word in words
        torch.testing.assert_close(table[words.index(word)], torch.tensor(ROWS[source]))
    assert options["found"] == int(saved["state_dict"]["embedding.from_file"].sum())
    evaluate(eval_cfg(ckpt, tmp_path / "eval"))  # no vectors file needed
    net, checkpoint = load_net(ckpt, data_kind="slot_filling")
    assert len(Tagger(net, checkpoint["hyper_parameters"]["vocabs"])("New York")["tags"]) == 2


def test_fine_tuned_vectors_move_and_other_sizes_are_projected_or_refused(
    tmp_path: Path, one_thread
) -> None:
    vectors = write_formats(tmp_path, ROWS)["glove"]
    ckpt = tagger_run(tmp_path, vectors, "trainer.max_epochs=2")
    saved = torch.load(ckpt, weights_only=True)
    words = saved["hyper_parameters"]["vocabs"]["words"]
    table = saved["state_dict"]["embedding.table.weight"]
    assert not torch.allclose(table[words.index("York")], torch.tensor(ROWS["york"]))
    with pytest.raises(ConfigError, match=r"3-d vectors but model.embedding_dim=8.*project=true"):
        tagger_run(tmp_path, vectors, "model.embedding_dim=8")
    ckpt = tagger_run(tmp_path, vectors, "model.embedding_dim=8", "model.word_vectors.project=true")
    assert torch.load(ckpt, weights_only=True)["state_dict"]["embedding.project.weight"].shape == (
        8,
        3,
    )


def test_the_vectors_file_is_read_once_per_training_run(
    tmp_path: Path, one_thread, monkeypatch
) -> None:
    """The data module reads the file for every word of the data; the tagger's embedding then
    takes its rows from that same read (a second pass over a multi-GB file costs minutes)."""
    from seqmodels.data import word_vectors

    reads = []
    real = word_vectors.read_word_vectors

    def counted(path, wanted, lowercase=True):
        wanted = list(wanted)
        reads.append(len(wanted))
        return real(path, wanted, lowercase)

    monkeypatch.setattr(word_vectors, "_last", {})
    monkeypatch.setattr(word_vectors, "read_word_vectors", counted)
    vectors = write_formats(tmp_path, ROWS)["glove"]
    ckpt = tagger_run(tmp_path, vectors, "model.word_vectors.freeze=true")
    assert len(reads) == 1, f"the vectors file was read {len(reads)} times, for {reads} words"
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["model"]["word_vectors"]["found"]


@pytest.mark.parametrize("decay_weights_only", [False, True])
def test_frozen_rows_do_not_move_under_weight_decay(
    tmp_path: Path, one_thread, decay_weights_only: bool
) -> None:
    """AdamW's decoupled decay shrinks every row it is given, gradient or not: frozen rows
    must stay the file's values bit for bit."""
    vectors = write_formats(tmp_path, ROWS)["glove"]
    ckpt = tagger_run(
        tmp_path,
        vectors,
        "model.word_vectors.freeze=true",
        "task.module.optimizer.weight_decay=0.1",
        f"+task.module.optimizer.decay_weights_only={decay_weights_only}",
        "trainer.max_epochs=3",
    )
    saved = torch.load(ckpt, weights_only=True)
    words = saved["hyper_parameters"]["vocabs"]["words"]
    table = saved["state_dict"]["embedding.table.weight"]
    from_file = saved["state_dict"]["embedding.from_file"]
    found = read_word_vectors(vectors, words)
    assert int(from_file.sum()) >= 3
    for index in from_file.nonzero().flatten().tolist():
        assert torch.equal(table[index], found.lookup(words[index])), words[index]


def test_a_run_saved_with_one_optimizer_group_resumes(tmp_path: Path, one_thread) -> None:
    """Frozen vectors with weight decay: runs saved when the optimizer had one parameter group
    (all parameters, in order) resume into today's two groups (decayed, not decayed)."""
    from seqmodels.tasks.base import decay_groups

    vectors = write_formats(tmp_path, ROWS)["glove"]
    overrides = ("model.word_vectors.freeze=true", "task.module.optimizer.weight_decay=0.1")
    ckpt = tagger_run(tmp_path, vectors, *overrides)
    # The checkpoint as the old code wrote it: one group over module.parameters(), in order.
    net, _ = load_net(ckpt, data_kind="slot_filling")
    everything = list(net.parameters())
    position = {id(p): i for i, p in enumerate(everything)}
    groups = decay_groups(net, 0.1, matrices_only=False)
    old_index = [position[id(p)] for group in groups for p in group["params"]]
    saved = torch.load(ckpt, weights_only=True)
    optimizer = saved["optimizer_states"][0]
    assert len(optimizer["param_groups"]) == 2
    optimizer["state"] = {old_index[k]: s for k, s in optimizer["state"].items()}
    first = optimizer["param_groups"][0]
    optimizer["param_groups"] = [{**first, "params": list(range(len(everything)))}]
    for scheduler in saved["lr_schedulers"]:
        for key in ("base_lrs", "_last_lr", "min_lrs"):
            if key in scheduler:
                scheduler[key] = scheduler[key][:1]
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    resumed = tagger_run(tmp_path, vectors, *overrides, f"ckpt_path={old}", "trainer.max_epochs=2")
    after = torch.load(resumed, weights_only=True)
    assert after["global_step"] > saved["global_step"]
    moments = {k: s["exp_avg"].shape for k, s in after["optimizer_states"][0]["state"].items()}
    params = [p for group in groups for p in group["params"]]
    assert all(moments[k] == params[k].shape for k in moments)
