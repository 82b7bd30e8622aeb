"""scripts/export.py: a .pt2 that serves with torch alone and answers as the checkpoint does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_script
from test_nets import OPTIMIZER, old_checkpoint, shapes_of

from seqmodels.commands.export import META_FILE, export_checkpoint, flip_within
from seqmodels.commands.tag import Tagger
from seqmodels.core.errors import ConfigError
from seqmodels.data.char_ids import encode_chars, pad_chars
from seqmodels.data.vocab import UNK, Vocab
from seqmodels.nets import CharLMNet, SlotTaggerNet, load_net
from seqmodels.nets.sampler import CharSampler

pytestmark = pytest.mark.usefixtures("one_thread_per_module")

WORDS = ["<pad>", UNK, "show", "me", "flights", "from", "denver", "to", "boston", "on", "monday"]
TAGS = ["<pad>", UNK, "O", "B-fromloc", "I-fromloc", "B-toloc", "I-toloc", "B-date"]
VOCABS = {
    "words": WORDS,
    "tags": TAGS,
    "intents": [UNK, "atis_flight", "atis_fare", "atis_airline"],
    "chars": ["<pad>", UNK, *"abcdefghijklmnopqrstuvwxyz"],
}
SENTENCES = [
    "show me flights from denver to boston on monday".split(),
    "flights to boston".split(),
    ["monday"],
    "from new york to denver".split(),  # "new", "york": unknown words
]
TAGGERS = {
    "bilstm2-crf-charlstm": (
        {"cell": "lstm", "embedding_dim": 8, "hidden_size": 6, "num_layers": 2,
         "bidirectional": True, "char_features": "lstm", "char_dim": 4, "char_size": 6,
         "intent_to_slot": True},
        "crf",
    ),
    "bigru-softmax-charcnn-attention": (
        {"cell": "gru", "embedding_dim": 8, "hidden_size": 6, "bidirectional": True,
         "char_features": "cnn", "char_dim": 4, "char_size": 5, "self_attention": 2},
        "softmax",
    ),
}  # fmt: skip


def tagger_checkpoint(tmp_path: Path, name: str) -> Path:
    model, decoder = TAGGERS[name]
    net = SlotTaggerNet(VOCABS, model, decoder=decoder)
    hparams = {"vocabs": VOCABS, "model": model, "optimizer": OPTIMIZER, "decoder": decoder}
    keys = list(net.state_dict())
    return old_checkpoint(tmp_path / f"{name}.ckpt", "slot_filling", hparams, keys, shapes_of(net))


def serve(program_path: Path) -> tuple[dict, torch.nn.Module]:
    extra = {META_FILE: ""}
    program = torch.export.load(str(program_path), extra_files=extra)
    return json.loads(extra[META_FILE]), program.module()


def batch_of(meta: dict, sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Word and char ids as a server builds them from the artifact's vocabularies."""
    words = Vocab(meta["vocabs"]["words"], unk=UNK)
    ids = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(words.encode(s)) for s in sentences], batch_first=True
    )
    chars = Vocab(meta["vocabs"]["chars"], unk=UNK)
    return ids, pad_chars([encode_chars(s, chars) for s in sentences])


@pytest.mark.parametrize("name", TAGGERS)
def test_an_exported_tagger_answers_as_the_checkpoint(tmp_path: Path, name: str) -> None:
    ckpt = tagger_checkpoint(tmp_path, name)
    umask = os.umask(0o022)
    try:
        artifact = export_checkpoint(ckpt, tmp_path / "tagger.pt2")
    finally:
        os.umask(umask)
    assert artifact.stat().st_mode & 0o777 == 0o644  # as a checkpoint, not mkstemp's 0600
    meta, program = serve(artifact)
    assert meta["vocabs"] == VOCABS and meta["task"] == "slot_filling"
    net, checkpoint = load_net(ckpt, data_kind="slot_filling")
    expected = Tagger(net, checkpoint["hyper_parameters"]["vocabs"]).predict(SENTENCES)
    words, chars = batch_of(meta, SENTENCES)
    for batch in ([slice(None)], [slice(i, i + 1) for i in range(len(SENTENCES))]):
        for rows in batch:  # the whole padded batch, then one sentence at a time
            tag_ids, tag_p, intent_ids, intent_p = program(words[rows], chars[rows])
            for k, (tags, probs, intent, p) in enumerate(expected[rows]):
                n = len(tags)
                assert [TAGS[i] for i in tag_ids[k, :n].tolist()] == tags
                torch.testing.assert_close(tag_p[k, :n], torch.tensor(probs), atol=1e-5, rtol=0)
                assert VOCABS["intents"][int(intent_ids[k])] == intent
                assert float(intent_p[k]) == pytest.approx(p, abs=1e-5)


def test_reversing_within_lengths_leaves_padding_in_place() -> None:
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]).unsqueeze(2)
    flipped = flip_within(x, torch.tensor([3, 2]))
    assert flipped.squeeze(2).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_exported_char_lm_steps_as_the_checkpoint(tmp_path: Path, cell: str) -> None:
    model = {"cell": cell, "embedding_dim": 6, "hidden_size": 8, "num_layers": 2}
    vocab = list("\n abcdefgh")
    net = CharLMNet(vocab, model)
    hparams = {"vocab": vocab, "model": model, "optimizer": OPTIMIZER}
    ckpt = old_checkpoint(
        tmp_path / "lm.ckpt", "char_lm", hparams, list(net.state_dict()), shapes_of(net)
    )
    meta, program = serve(export_checkpoint(ckpt, tmp_path / "lm.pt2"))
    net, _ = load_net(ckpt, data_kind="text")
    assert meta["vocab"] == vocab
    layers, _, hidden = meta["state_shape"]
    h = c = torch.zeros(layers, 1, hidden)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        logits, state = net(ids)
    got, h, c = program(ids, h, c)
    torch.testing.assert_close(got, logits, atol=1e-5, rtol=0)
    # Greedy continuation, one character at a time through the program, as a server would.
    text = "ab"
    expected = "".join(CharSampler(net, vocab).sample(text, 12, temperature=0.0))
    h = c = torch.zeros(layers, 1, hidden)
    logits, h, c = program(torch.tensor([[vocab.index(ch) for ch in text]]), h, c)
    drawn = ""
    for _ in range(12):
        next_id = int(logits[0, -1].argmax())
        drawn += vocab[next_id]
        logits, h, c = program(torch.tensor([[next_id]]), h, c)
    assert drawn == expected


def test_export_script_writes_an_artifact_bare_torch_serves(tmp_path: Path) -> None:
    """The CLI, then a Python that imports only torch and json tags with the file."""
    ckpt = tagger_checkpoint(tmp_path, "bilstm2-crf-charlstm")
    done = run_script("export.py", f"ckpt_path={ckpt}", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    artifact = ckpt.with_suffix(".pt2")
    assert artifact.is_file() and str(artifact) in done.stdout
    serving = (
        "import json, sys, torch\n"
        "assert not any(m.startswith(('seqmodels', 'lightning', 'hydra')) for m in sys.modules)\n"
        "extra = {'seqmodels.json': ''}\n"
        f"run = torch.export.load({str(artifact)!r}, extra_files=extra).module()\n"
        "meta = json.loads(extra['seqmodels.json'])\n"
        "ids = {w: i for i, w in enumerate(meta['vocabs']['words'])}\n"
        "words = torch.tensor([[ids.get(w, 1) for w in 'flights to boston'.split()]])\n"
        "chars = torch.ones(1, 3, 7, dtype=torch.long)\n"
        "tag_ids, tag_p, intent, p = run(words, chars)\n"
        "print(json.dumps([meta['vocabs']['tags'][i] for i in tag_ids[0].tolist()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", serving], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    net, checkpoint = load_net(ckpt)
    words, chars = torch.tensor([[4, 7, 8]]), torch.ones(1, 3, 7, dtype=torch.long)
    with torch.inference_mode():
        scores, _ = net(words, torch.tensor([3]), chars)
        expected = net.decode(net.predict_tags(scores, words != 0), torch.tensor([3]))[0]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


def test_export_refuses_a_format_it_does_not_write(tmp_path: Path) -> None:
    ckpt = tagger_checkpoint(tmp_path, "bilstm2-crf-charlstm")
    with pytest.raises(ConfigError, match="format must be one of pt2, got 'onnx'"):
        export_checkpoint(ckpt, tmp_path / "x.onnx", fmt="onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.name]
