"""model.char_lm_features: Flair-style word features from this framework's forward/backward
char LMs; a tagger checkpoint that needs no LM file to load, tag or evaluate."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import make_cfg, single_thread
from hydra.utils import instantiate
from test_eval import eval_cfg
from torch.overrides import TorchFunctionMode

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.export import export_checkpoint
from seqmodels.commands.tag import Tagger
from seqmodels.commands.train import build_module, train
from seqmodels.core.errors import ConfigError
from seqmodels.data.text_codec import TextCodec
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


def train_lms(root: Path, text: str, unit: str) -> tuple[Path, Path]:
    """A tiny forward and backward LM (``unit`` char or byte) on ``text``."""
    path = root / "train.txt"
    path.write_text(text * 20, encoding="utf-8")
    paths = []
    for direction, reverse in (("fwd", "false"), ("bwd", "true")):
        out = root / direction
        overrides = [
            *("task=char_lm", "data=text_file", f"data.path={path}", f"data.unit={unit}"),
            *(f"data.reverse={reverse}", "data.block_size=32", "data.batch_size=4"),
            *("data.eval_window=null", "logger=none", "test=false"),
            f"data.cache_dir={root / 'tokens'}",
        ]
        with single_thread():
            train(make_cfg(out, *overrides))
        paths.append(out / "checkpoints" / "last.ckpt")
    return paths[0], paths[1]


UNICODE_TEXT = "José González visited Zürich .\nEU rejects 北京 call .\nPeter said no .\n"
UNICODE_SENTENCES = [["José", "González", "visited", "Zürich"], ["北京", "."]]


@pytest.fixture(scope="module")
def byte_lms(tmp_path_factory) -> tuple[Path, Path]:
    return train_lms(tmp_path_factory.mktemp("byte_lms"), UNICODE_TEXT, "byte")


@pytest.fixture(scope="module")
def unicode_char_lms(tmp_path_factory) -> tuple[Path, Path]:
    return train_lms(tmp_path_factory.mktemp("char_lms"), UNICODE_TEXT, "char")


def expected_features(specs, nets, words: list[str]) -> list[torch.Tensor]:
    """Per word: each LM's state at the word, the text encoded as the LM's own data was."""
    text = "\n" + " ".join(words) + "\n"
    per_lm = []
    for spec, net in zip(specs, nets):
        codec = TextCodec(spec["unit"])  # reading order applied below
        stoi = {c: i for i, c in enumerate(spec["vocab"])}
        symbols = codec.encode(text)
        ids = [stoi.get(c, stoi[" "]) for c in symbols]
        if spec["reverse"]:
            ids = ids[::-1]
        with torch.no_grad():
            states, _ = net.encoder.run(net.embedding(torch.tensor([ids])))
        rows = []
        for t, word in enumerate(words):
            start = len(codec.encode("\n" + "".join(w + " " for w in words[:t])))
            end = start + len(codec.encode(word)) - 1
            rows.append(states[0, len(symbols) - 1 - start] if spec["reverse"] else states[0, end])
        per_lm.append(torch.stack(rows))
    return [torch.cat(parts, dim=-1) for parts in zip(*per_lm)]


@pytest.mark.parametrize("kind", ["char_lms", "byte_lms", "unicode_char_lms"])
def test_features_are_the_lm_states_at_each_word(kind, request, one_thread) -> None:
    """Forward: the state after the word's last symbol of "\\n w1 w2 ...\\n"; backward: the
    backward LM's state after reading that text right to left up to the word's first symbol;
    symbols as the LM's data had them (a byte LM reads "é" as its two UTF-8 bytes)."""
    specs, nets = resolve_char_lms([str(p) for p in request.getfixturevalue(kind)])
    assert [s["reverse"] for s in specs] == [False, True]
    assert {s["unit"] for s in specs} == {"byte" if kind == "byte_lms" else "char"}
    features = CharLMFeatures(specs, nets).eval()
    sentences = SENTENCES if kind == "char_lms" else UNICODE_SENTENCES
    inputs = features.inputs(sentences)
    out = features.compute(inputs["ids"], inputs["where"])
    size = nets[0].encoder.output_size
    assert out.shape == (2, max(map(len, sentences)), 2 * size)
    for b, words in enumerate(sentences):
        for t, expected in enumerate(expected_features(specs, nets, words)):
            torch.testing.assert_close(out[b, t], expected)
        assert torch.all(out[b, len(words) :] == 0)  # padding words
    # Frozen LMs: the features are cached per sentence (float16) and served from the cache.
    cached = features(inputs)
    torch.testing.assert_close(cached, out, atol=2e-3, rtol=1e-2)
    assert len(features.cache) == 2
    features.lms[0].embedding.weight.data.zero_()  # a second call no longer runs the LMs
    swapped = features.inputs(sentences[::-1])
    torch.testing.assert_close(
        features(swapped)[1, : len(sentences[0])], cached[0, : len(sentences[0])]
    )


def test_the_tagger_feeds_the_lms_the_words_as_written(
    byte_lms, unicode_char_lms, tmp_path: Path, one_thread
) -> None:
    """Through training and tag.py's Tagger: a byte LM reads "José" as J o c3 a9 (not the
    Latin-1 byte e9), "北京" as its six bytes (not spaces), and a char LM reads the characters
    the tagger's train-only character vocabulary lacks (the fixture's train is ASCII)."""
    for lms, unit in ((byte_lms, "byte"), (unicode_char_lms, "char")):
        run = tmp_path / lms[0].parent.parent.name
        train(
            make_cfg(
                run,
                "data=conll",
                f"data.path={FIXTURE}",
                "data.batch_size=2",
                f"+model.char_lm_features=[{lms[0]},{lms[1]}]",
                "logger=none",
                "test=false",
            )
        )
        net, checkpoint = load_net(run / "checkpoints" / "last.ckpt", data_kind="slot_filling")
        specs = checkpoint["hyper_parameters"]["model"]["char_lm_features"]
        tagger = Tagger(net, checkpoint["hyper_parameters"]["vocabs"])
        assert not {"é", "北"} & set(tagger.chars.itos)  # train is ASCII
        read: list[list[int]] = []
        forward_lm = net.words_in.char_lms.lms[0]
        forward_lm.embedding.register_forward_hook(
            lambda m, args, out, read=read: read.append(args[0][0].tolist())
        )
        result = tagger("José visited 北京")
        assert len(result["tags"]) == 3
        vocab = specs[0]["vocab"]
        text = "\nJosé visited 北京\n"
        symbols = text.encode().decode("latin-1") if unit == "byte" else text
        assert read == [[vocab.index(c) for c in symbols]]
        assert specs[0]["unit"] == unit  # recorded in the tagger's checkpoint


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


SYNCS = {"item", "tolist", "numpy", "__int__", "__float__", "__bool__", "__index__"}
VALUE_SHAPED = {"nonzero"}  # a shape that depends on values: a sync only on a device


class NoHostSync(TorchFunctionMode):
    """Raises on what would make the host wait for a GPU: a tensor read as a Python value
    (``.item()``, ``.tolist()``, ``int()``, ``if tensor:``), on any device, or a
    shape that depends on values (``nonzero``) of a tensor that is not on the CPU.

    ``nonzero`` of a CPU tensor is allowed: a CPU op waits for no device. CharCNN's CPU path
    selects the real words with it; on CUDA (and under compile/export) it encodes every row,
    so the check still covers the GPU's path when the test runs on one."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        on_device = any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in args)
        if name in SYNCS or (name in VALUE_SHAPED and on_device):
            raise AssertionError(f"host sync in the training step: Tensor.{name}")
        return func(*args, **(kwargs or {}))


class SyncFreeTrainingStep(L.Callback):
    """training_step (and the forward it runs) under :class:`NoHostSync`, on any device.

    Not ``torch.cuda.set_sync_debug_mode("error")``: the packed RNN encoder hands
    ``pack_padded_sequence`` its lengths on the CPU (``lengths.cpu()``, a sync while the batch's
    lengths sit on the GPU), which this test does not cover (#34: left open)."""

    def __init__(self) -> None:
        self.steps, self.mode = 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.mode = NoHostSync()
        self.mode.__enter__()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.mode.__exit__(None, None, None)
        self.mode = None
        self.steps += 1

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.mode is not None:  # else it stays on for Lightning's teardown and the next test
            self.mode.__exit__(None, None, None)
            self.mode = None


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_the_training_step_never_waits_for_the_device(
    char_lms, tmp_path: Path, one_thread, decoder: str
) -> None:
    """No tensor is read back on the host in training_step: the char-LM inputs come built
    from the words, the loss's batch size from the host's lists."""
    cfg = make_cfg(
        tmp_path,
        "data=conll",
        f"data.path={FIXTURE}",
        "data.batch_size=2",
        f"task.module.decoder={decoder}",
        "model.char_features=cnn",
        f"+model.char_lm_features=[{char_lms[0]},{char_lms[1]}]",
    )
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    check = SyncFreeTrainingStep()
    trainer = L.Trainer(
        accelerator="gpu" if torch.cuda.is_available() else "cpu",
        devices=1,
        max_steps=4,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[check],
    )
    trainer.fit(module, datamodule=datamodule)
    assert check.steps == 4


def test_the_feature_cache_is_bounded_least_recently_used_out(char_lms, one_thread) -> None:
    specs, nets = resolve_char_lms([str(p) for p in char_lms])
    size = 2 * nets[0].encoder.output_size * 2  # bytes per word: float16 features of both LMs
    features = CharLMFeatures(specs, nets, cache_mib=10 * 3 * size / 2**20).eval()  # 10 x 3 words
    first = [["Peter", "said", "no"]]
    features(features.inputs(first))
    for index in range(40):
        features(features.inputs([["EU", "said", str(index)]]))
        features(features.inputs(first))  # used again: stays
    assert features.cached_bytes <= features.cache_bytes and len(features.cache) == 10
    assert "Peter\nsaid\nno" in features.cache and "EU\nsaid\n0" not in features.cache


def test_a_sentence_twice_in_a_batch_is_cached_once(char_lms, one_thread) -> None:
    """The same sentence twice in one batch (ATIS repeats many) is remembered once: the counted
    bytes stay those the cache holds, so the cache keeps serving hits."""
    specs, nets = resolve_char_lms([str(p) for p in char_lms])
    size = 2 * nets[0].encoder.output_size * 2  # bytes per word: float16 features of both LMs
    features = CharLMFeatures(specs, nets, cache_mib=20 * size / 2**20).eval()  # room for 20 words
    for step in range(30):
        sentence = ["abc", f"x{step}"]
        features(features.inputs([sentence, sentence]))
        held = sum(v.numel() * v.element_size() for v in features.cache.values())
        assert features.cached_bytes == held, step
    assert len(features.cache) == 10 and "abc\nx29" in features.cache
