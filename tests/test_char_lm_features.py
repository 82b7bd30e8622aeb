"""model.char_lm_features: Flair-style word features from this framework's forward/backward
char LMs; a tagger checkpoint that needs no LM file to load, tag or evaluate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, single_thread
from test_eval import eval_cfg

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.export import export_checkpoint
from seqmodels.commands.tag import Tagger
from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError
from seqmodels.data.char_ids import encode_chars, pad_chars
from seqmodels.data.vocab import Vocab
from seqmodels.nets import load_net
from seqmodels.nets.char_lm_features import CharLMFeatures, resolve_char_lms

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "conll_ner"
SENTENCES = [["Peter", "Blackburn", "said", "New", "York"], ["EU", "."]]


@pytest.fixture(scope="module")
def char_lms(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny forward and backward char LM trained on the fixture's sentences."""
    root = tmp_path_factory.mktemp("lms")
    text = root / "train.txt"
    from seqmodels.data.conll_files import write_sentence_text

    write_sentence_text(FIXTURE / "train.txt", text)
    text.write_text(text.read_text() * 20)  # enough characters for a few windows
    paths = []
    for direction, reverse in (("fwd", "false"), ("bwd", "true")):
        out = root / direction
        overrides = [
            "task=char_lm",
            "data=text_file",
            f"data.path={text}",
            f"data.reverse={reverse}",
            "data.block_size=32",
            "data.batch_size=4",
            "data.eval_window=null",
            "logger=none",
            "test=false",
        ]
        with single_thread():
            train(make_cfg(out, *overrides))
        paths.append(out / "checkpoints" / "last.ckpt")
    return paths[0], paths[1]


def test_features_are_the_lm_states_at_each_word(char_lms, one_thread) -> None:
    """Forward: the state after the word's last character of "\\n w1 w2 ...\\n"; backward: the
    backward LM's state after reading that text right to left up to the word's first char."""
    specs, nets = resolve_char_lms([str(p) for p in char_lms])
    assert [s["reverse"] for s in specs] == [False, True]
    chars = Vocab.build(w for s in SENTENCES for w in s)
    features = CharLMFeatures(specs, nets, list(chars.itos)).eval()
    batch = pad_chars([encode_chars(s, chars) for s in SENTENCES])
    out = features.compute(batch)
    size = nets[0].encoder.output_size
    assert out.shape == (2, 5, 2 * size)
    for b, words in enumerate(SENTENCES):
        text = "\n" + " ".join(words) + "\n"
        fwd_ids = torch.tensor([[specs[0]["vocab"].index(c) for c in text]])
        bwd_ids = torch.tensor([[specs[1]["vocab"].index(c) for c in reversed(text)]])
        with torch.no_grad():
            fwd, _ = nets[0].encoder.run(nets[0].embedding(fwd_ids))
            bwd, _ = nets[1].encoder.run(nets[1].embedding(bwd_ids))
        start = 1
        for t, word in enumerate(words):
            end = start + len(word) - 1
            torch.testing.assert_close(out[b, t, :size], fwd[0, end])
            torch.testing.assert_close(out[b, t, size:], bwd[0, len(text) - 1 - start])
            start = end + 2
        assert torch.all(out[b, len(words) :] == 0)  # padding words
    # Frozen LMs: the features are cached per sentence (float16) and served from the cache.
    cached = features(batch)
    torch.testing.assert_close(cached, out, atol=2e-3, rtol=1e-2)
    assert len(features.cache) == 2
    features.lms[0].embedding.weight.data.zero_()  # a second call no longer runs the LMs
    torch.testing.assert_close(features(batch[[1, 0]]), cached[[1, 0]])


def test_tagger_with_char_lm_features_needs_no_lm_file_after_training(
    char_lms, tmp_path: Path, one_thread
) -> None:
    lm_copies = []
    for path in char_lms:  # copies, removed after training
        lm_copies.append(tmp_path / f"lm_{path.parent.parent.name}.ckpt")
        shutil.copy(path, lm_copies[-1])
    run = tmp_path / "run"
    cfg = make_cfg(
        run,
        "data=conll",
        f"data.path={FIXTURE}",
        "data.batch_size=2",
        "task.module.decoder=crf",
        "model.char_features=cnn",
        f"+model.char_lm_features=[{lm_copies[0]},{lm_copies[1]}]",
        "logger=none",
    )
    metrics = train(cfg)
    for path in lm_copies:
        path.unlink()
    ckpt = next((run / "checkpoints").glob("epoch_*.ckpt"))
    saved = torch.load(ckpt, weights_only=True)
    specs = saved["hyper_parameters"]["model"]["char_lm_features"]
    assert [s["reverse"] for s in specs] == [False, True]
    assert all(type(s["vocab"]) is list and type(s["model"]) is dict for s in specs)
    lm_weights = [k for k in saved["state_dict"] if k.startswith("words_in.char_lms.lms.")]
    assert lm_weights
    # The frozen LMs' weights are those of the files they came from.
    original = torch.load(char_lms[0], weights_only=True)["state_dict"]
    torch.testing.assert_close(
        saved["state_dict"]["words_in.char_lms.lms.0.embedding.weight"],
        original["embedding.weight"],
    )
    evaluated = evaluate(eval_cfg(ckpt, tmp_path / "eval"))
    assert evaluated["test/f1"] == pytest.approx(metrics["test/f1"], rel=1e-5)
    net, checkpoint = load_net(ckpt, data_kind="slot_filling")
    result = Tagger(net, checkpoint["hyper_parameters"]["vocabs"])("John lives in Paris")
    assert len(result["tags"]) == 4
    # Export refuses such a tagger in one line, and writes nothing.
    with pytest.raises(ConfigError, match="model.char_lm_features"):
        export_checkpoint(ckpt, tmp_path / "tagger.pt2")
    assert not (tmp_path / "tagger.pt2").exists()


def test_bad_char_lm_features_are_named(char_lms, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.char_lm_features.*does not exist"):
        resolve_char_lms([str(tmp_path / "missing.ckpt")])
    with pytest.raises(ConfigError, match="must be a list"):
        resolve_char_lms("fwd.ckpt")
