"""scripts/generate.py and the carried-state sampler behind it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, requires_data, run_script
from hydra import compose, initialize_config_dir

from seqmodels.commands.generate import SEPARATOR, generate
from seqmodels.commands.train import CONFIG_DIR, train
from seqmodels.core.errors import ConfigError
from seqmodels.nets.sampler import (
    CharSampler,
    UnknownCharactersError,
    check_options,
    next_token_probs,
)
from seqmodels.tasks import CharLM

VOCAB = list("\n !',.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@pytest.fixture(scope="module")
def char_ckpt(tmp_path_factory) -> Path:
    """A char LM trained for a few steps on tiny Shakespeare (GRU: its state is one tensor)."""
    out = tmp_path_factory.mktemp("char_lm")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(make_cfg(out, "task=char_lm", "model=gru", "data.block_size=32", "test=false"))
    finally:
        torch.set_num_threads(threads)
    return out / "checkpoints" / "last.ckpt"


def gen_cfg(ckpt: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="generate", overrides=[f"ckpt_path={ckpt}", *overrides])


def sample_text(ckpt: Path, *overrides: str) -> str:
    out = io.StringIO()
    generate(gen_cfg(ckpt, *overrides), out=out)
    return out.getvalue()


@requires_data
def test_cli_same_seed_same_text_streamed_with_rate_on_stderr(char_ckpt, tmp_path: Path) -> None:
    args = [f"ckpt_path={char_ckpt}", "prompt=ROMEO:", "length=300", "temperature=0.8", "top_k=40"]
    first = run_script("generate.py", *args, "seed=1", cwd=tmp_path, timeout=120)
    again = run_script("generate.py", *args, "seed=1", cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout == again.stdout
    assert first.stdout == sample_text(char_ckpt, *args[1:], "seed=1")  # in-process: the same
    assert first.stdout != sample_text(char_ckpt, *args[1:], "seed=2")
    assert first.stdout.startswith("ROMEO:") and len(first.stdout) == len("ROMEO:") + 300 + 1
    rate = re.search(r"sampled 300 characters in [\d.]+ s \((\d+) chars/s\)", first.stderr)
    assert rate, first.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # nothing written: no run folder, no log file


@requires_data
def test_top_k_1_is_greedy_and_samples_are_independent(char_ckpt) -> None:
    greedy = sample_text(char_ckpt, "temperature=0", "length=80", "seed=5")
    assert sample_text(char_ckpt, "top_k=1", "temperature=1.3", "length=80", "seed=9") == greedy
    assert sample_text(char_ckpt, "temperature=0", "length=80", "seed=6") == greedy
    two = sample_text(char_ckpt, "num_samples=2", "length=80", "seed=3", "prompt=KING:")
    first, second = two.rstrip("\n").split(SEPARATOR)
    assert first.startswith("KING:") and second.startswith("KING:") and first != second
    assert len(first) == len(second) == len("KING:") + 80


@requires_data
def test_unknown_prompt_characters_are_named(char_ckpt, tmp_path: Path) -> None:
    with pytest.raises(UnknownCharactersError, match=r"'é', '€'"):
        sample_text(char_ckpt, "prompt='caf€é'")
    args = [f"ckpt_path={char_ckpt}", "prompt='caf€é'"]
    result = run_script("generate.py", *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert "'é', '€'" in result.stderr and "Traceback" not in result.stderr


@requires_data
def test_a_slot_filling_checkpoint_is_refused(cfg_factory, tmp_path: Path, one_thread) -> None:
    train(cfg_factory("test=false"))
    with pytest.raises(Exception, match="task=slot_filling checkpoint"):
        sample_text(tmp_path / "checkpoints" / "last.ckpt")


class Recording(torch.nn.Module):
    """Passes calls to a char LM and keeps the logits of each call (a real model, observed)."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, ids, state):
        logits, state = self.model(ids, state)
        self.calls.append(logits[0, -1].clone())
        return logits, state


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "hand_lstm"])
def test_carried_state_gives_the_distribution_of_the_whole_prefix(cell: str) -> None:
    torch.manual_seed(0)
    model = dict(cell=cell, embedding_dim=12, hidden_size=20, num_layers=2, dropout=0.0)
    lm = CharLM(VOCAB, model, optimizer={"_target_": "torch.optim.SGD", "lr": 0.1}).eval()
    recorder = Recording(lm)
    prompt = "To be, or not"
    text = "".join(CharSampler(recorder, VOCAB).sample(prompt, 40, generator=torch.Generator()))
    assert len(recorder.calls) == 40  # one pass for the prompt, then one character per call
    ids = torch.tensor([[VOCAB.index(c) for c in prompt + text]])
    with torch.no_grad():
        whole, _ = lm(ids)
    for i, step_logits in enumerate(recorder.calls):
        expected = torch.softmax(whole[0, len(prompt) - 1 + i], -1)
        torch.testing.assert_close(torch.softmax(step_logits, -1), expected, atol=1e-6, rtol=1e-5)


def test_top_k_and_top_p_restrict_the_choice() -> None:
    logits = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.1]))
    assert (next_token_probs(logits, 1.0, top_k=2) > 0).tolist() == [True, True, False, False]
    probs = next_token_probs(logits, 1.0, top_p=0.7)  # 0.5 + 0.25 reaches 0.7
    torch.testing.assert_close(probs, torch.tensor([2 / 3, 1 / 3, 0.0, 0.0]))
    assert next_token_probs(logits, 1.0, top_p=0.4).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert next_token_probs(logits, 0.0).tolist() == [1.0, 0.0, 0.0, 0.0]
    flat = next_token_probs(logits, 100.0)
    assert flat.max() - flat.min() < 0.01  # high temperature: close to uniform


@pytest.mark.parametrize("temperature", [1e-300, 1e-45, 1e-7])
def test_a_temperature_near_zero_is_refused_and_never_gives_nan(temperature: float) -> None:
    """logits / 1e-300 overflows to inf, and softmax then gives nan (multinomial: a traceback)."""
    logits = torch.tensor([2.0, 5.0, -1.0, 4.9])
    with pytest.raises(ConfigError, match=r"0 \(greedy\) or at least 1e-06"):
        check_options(temperature, None, None, 5)
    probs = next_token_probs(logits, temperature)  # called directly: greedy
    assert probs.tolist() == [0.0, 1.0, 0.0, 0.0]
    probs = next_token_probs(logits * 1e32, 1e-6)  # the overflow at the minimum
    assert torch.isfinite(probs).all() and probs.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert next_token_probs(logits, 1e-6).tolist() == [0.0, 1.0, 0.0, 0.0]
