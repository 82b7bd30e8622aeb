"""The plain networks: checkpoints written before the split load into them and into the task
modules under the same names, both compute the same, and inference imports no training stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from seqmodels.commands.evaluate import load_module
from seqmodels.core.errors import CheckpointError
from seqmodels.nets import CharLMNet, LongRangeNet, SlotTaggerNet, load_net

VOCABS = {
    "words": ["<pad>", "<unk>", "show", "flights", "to", "boston"],
    "tags": ["<pad>", "<unk>", "O", "B-toloc", "I-toloc"],
    "intents": ["<unk>", "atis_flight", "atis_fare"],
    "chars": ["<pad>", "<unk>", "s", "h", "o", "w"],
}
SLOT_MODEL = {
    "cell": "lstm", "embedding_dim": 6, "hidden_size": 5, "bidirectional": True,
    "char_features": "cnn", "char_dim": 3, "char_size": 4, "intent_to_slot": True,
}  # fmt: skip
# The parameter names checkpoints have always had (copied from one written before the networks
# were split from the LightningModules): renaming any breaks every checkpoint users hold.
SLOT_KEYS = [
    "embedding.weight", "words_in.chars.embedding.weight", "words_in.chars.conv.weight",
    "words_in.chars.conv.bias", "encoder.rnn.weight_ih_l0", "encoder.rnn.weight_hh_l0",
    "encoder.rnn.bias_ih_l0", "encoder.rnn.bias_hh_l0", "encoder.rnn.weight_ih_l0_reverse",
    "encoder.rnn.weight_hh_l0_reverse", "encoder.rnn.bias_ih_l0_reverse",
    "encoder.rnn.bias_hh_l0_reverse", "intent_head.weight", "intent_head.bias",
    "intent_to_slot.project.weight", "intent_to_slot.project.bias", "tag_head.weight",
    "tag_head.bias", "crf.start", "crf.end", "crf.transitions",
]  # fmt: skip
CHAR_KEYS = [
    "embedding.weight", "encoder.rnn.weight_ih_l0", "encoder.rnn.weight_hh_l0",
    "encoder.rnn.bias_ih_l0", "encoder.rnn.bias_hh_l0", "head.weight", "head.bias",
]  # fmt: skip
OPTIMIZER = {"_target_": "torch.optim.AdamW", "lr": 0.01}


def old_checkpoint(path: Path, task: str, hparams: dict, keys: list[str], shapes: dict) -> Path:
    """A checkpoint in the layout train() has always written, weights under ``keys``."""
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shapes[k], generator=generator) for k in keys}
    config = {"task": {"name": task}, "model": hparams["model"], "data": {}}
    checkpoint = {"config": config, "hyper_parameters": hparams, "state_dict": state}
    torch.save(checkpoint, path)
    return path


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_an_old_slot_checkpoint_loads_into_the_net_and_the_task(tmp_path: Path) -> None:
    net = SlotTaggerNet(VOCABS, SLOT_MODEL, decoder="crf")
    assert sorted(net.state_dict()) == sorted(SLOT_KEYS)
    hparams = {"vocabs": VOCABS, "model": SLOT_MODEL, "optimizer": OPTIMIZER, "decoder": "crf"}
    ckpt = old_checkpoint(tmp_path / "a.ckpt", "slot_filling", hparams, SLOT_KEYS, shapes_of(net))
    net, _ = load_net(ckpt, data_kind="slot_filling")
    module, _ = load_module(ckpt, data_kind="slot_filling")
    assert type(net) is SlotTaggerNet and isinstance(module, SlotTaggerNet)
    words = torch.tensor([[2, 3, 4, 5], [2, 3, 0, 0]])
    lengths = torch.tensor([4, 2])
    chars = torch.randint(1, 6, (2, 4, 3))
    with torch.inference_mode():
        tags_a, intents_a = net(words, lengths, chars)
        tags_b, intents_b = module(words, lengths, chars)
        mask = words != 0
        assert torch.equal(net.predict_tags(tags_a, mask), module.predict_tags(tags_b, mask))
    torch.testing.assert_close(tags_a, tags_b, rtol=0, atol=0)
    torch.testing.assert_close(intents_a, intents_b, rtol=0, atol=0)


def test_an_old_char_lm_checkpoint_loads_into_the_net_and_the_task(tmp_path: Path) -> None:
    model = {"cell": "lstm", "embedding_dim": 4, "hidden_size": 6}
    vocab = list("abc \n")
    net = CharLMNet(vocab, model)
    assert sorted(net.state_dict()) == sorted(CHAR_KEYS)
    hparams = {"vocab": vocab, "model": model, "optimizer": OPTIMIZER, "carry_state": True}
    ckpt = old_checkpoint(tmp_path / "c.ckpt", "char_lm", hparams, CHAR_KEYS, shapes_of(net))
    net, _ = load_net(ckpt, data_kind="text")
    module, _ = load_module(ckpt, data_kind="text")
    x = torch.tensor([[0, 1, 2, 3, 4]])
    with torch.inference_mode():
        (logits_a, state_a), (logits_b, state_b) = net(x), module(x)
    torch.testing.assert_close(logits_a, logits_b, rtol=0, atol=0)
    torch.testing.assert_close(state_a, state_b, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="task=char_lm checkpoint"):
        load_net(ckpt, data_kind="slot_filling")


def test_the_long_range_net_has_the_task_modules_names() -> None:
    model = {"cell": "gru", "embedding_dim": 4, "hidden_size": 6}
    net = LongRangeNet("copy", 5, 3, model)
    assert sorted(net.state_dict()) == [
        "embedding.weight", "encoder.rnn.bias_hh_l0", "encoder.rnn.bias_ih_l0",
        "encoder.rnn.weight_hh_l0", "encoder.rnn.weight_ih_l0", "head.bias", "head.weight",
    ]  # fmt: skip


def test_inference_imports_no_training_stack() -> None:
    code = (
        "import sys; import seqmodels.commands.tag, seqmodels.commands.generate, seqmodels.nets; "
        "heavy = ('lightning', 'pytorch_lightning', 'lightning_fabric', 'torchmetrics', "
        "'sklearn', 'seqeval'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
