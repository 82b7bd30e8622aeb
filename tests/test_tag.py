"""scripts/tag.py: slots and intent of typed sentences, from a slot-filling checkpoint alone."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR, REPO, make_cfg, requires_data, run_script, single_thread
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from seqmodels.commands.tag import Tagger, entities_of, tag
from seqmodels.commands.train import CONFIG_DIR, train
from seqmodels.core.errors import CheckpointError, ConfigError
from seqmodels.data.raw_text import Token
from seqmodels.data.slot_filling import encode_chars, pad_chars
from seqmodels.nets import load_net

RAW = "Show me flights from Denver, to Boston on Monday!"
RESULT_KEYS = {"text", "intent", "entities", "tokens", "tags"}
ENTITY_KEYS = {"entity", "value", "start", "end", "confidence_entity"}


@pytest.fixture(scope="module")
def atis_ckpt(tmp_path_factory) -> Path:
    """A small Bi-LSTM trained on an epoch of ATIS, fast (enough to tag cities)."""
    out = tmp_path_factory.mktemp("atis")
    overrides = [
        *("model.embedding_dim=32", "model.hidden_size=32", "task.module.optimizer.lr=0.02"),
        *("trainer.limit_train_batches=140", "test=false"),
    ]
    with single_thread():
        train(make_cfg(out, *overrides))
    return out / "checkpoints" / "last.ckpt"


def tagger_of(ckpt: Path) -> Tagger:
    module, checkpoint = load_net(ckpt, data_kind="slot_filling")
    return Tagger(module, checkpoint["hyper_parameters"]["vocabs"])


def tag_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("tag", list(overrides))


def check_schema(result: dict, text: str) -> dict:
    """The one schema of every output line (Rasa NLU's parse output, plus tokens and tags)."""
    assert set(result) == RESULT_KEYS
    assert result["text"] == text
    assert set(result["intent"]) == {"name", "confidence"}
    tokens, tags = result["tokens"], result["tags"]
    assert len(tokens) == len(tags)
    for token in tokens:
        assert set(token) == {"text", "start", "end"}
        assert 0 <= token["start"] < token["end"] <= len(text)
    assert all(t == "O" or t[:2] in ("B-", "I-") for t in tags)
    if not tokens:
        assert result["intent"] == {"name": None, "confidence": 0.0}
        assert result["entities"] == []
        return result
    assert isinstance(result["intent"]["name"], str)
    assert 0 < result["intent"]["confidence"] <= 1
    for entity in result["entities"]:
        assert set(entity) == ENTITY_KEYS
        assert isinstance(entity["entity"], str)
        assert entity["value"] == text[entity["start"] : entity["end"]]  # as typed
        assert 0 < entity["confidence_entity"] <= 1
    return result


@requires_data
def test_text_prints_one_json_line_and_nothing_else(atis_ckpt, tmp_path: Path) -> None:
    result = run_script("tag.py", f"ckpt_path={atis_ckpt}", f"text='{RAW}'", cwd=tmp_path,
                        timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = result.stdout.splitlines()  # stdout is pure JSON lines: no table
    parsed = check_schema(json.loads(line), RAW)
    assert parsed["intent"]["name"].startswith("atis_")
    assert list(tmp_path.iterdir()) == []  # nothing written


@requires_data
def test_stdin_gives_one_json_line_per_input_line_in_the_same_schema(
    atis_ckpt, tmp_path: Path
) -> None:
    lines = ["show me flights from boston to denver", "", RAW, "  ?!  ", "cheapest fare to Dallas"]
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "tag.py"),
            f"ckpt_path={atis_ckpt}",
            "batch_size=2",
        ],
        input="\n".join(lines) + "\n",
        cwd=tmp_path,
        env={**os.environ, "SEQMODELS_DATA_DIR": str(DATA_DIR)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(outputs) == len(lines)  # aligned with the input, blank lines included
    for output, line in zip(outputs, lines):
        check_schema(output, line)
    assert outputs[1]["tokens"] == outputs[3]["tokens"] == []  # nothing to tag
    assert outputs[0]["tokens"] and outputs[2]["tokens"]


@requires_data
def test_raw_text_is_tokenised_as_atis_and_slots_point_into_it(atis_ckpt) -> None:
    result = check_schema(tagger_of(atis_ckpt)(RAW), RAW)
    words = "show me flights from denver to boston on monday".split()
    assert [t["text"] for t in result["tokens"]] == words  # lower-case, no "," or "!"
    assert [RAW[t["start"] : t["end"]] for t in result["tokens"]] == RAW.replace(",", "").replace(
        "!", ""
    ).split()
    entities = {e["value"]: e for e in result["entities"]}
    assert {"Denver", "Boston"} <= set(entities), result["entities"]
    assert (entities["Denver"]["start"], entities["Denver"]["end"]) == (21, 27)
    assert (entities["Boston"]["start"], entities["Boston"]["end"]) == (32, 38)
    assert entities["Denver"]["entity"].endswith("city_name")


def assert_same_results(one: list[dict], batched: list[dict]) -> None:
    """Equal but for float rounding in the confidences."""
    for a, b in zip(one, batched, strict=True):
        assert {k: a[k] for k in ("text", "tokens", "tags")} == {
            k: b[k] for k in ("text", "tokens", "tags")
        }
        assert a["intent"]["name"] == b["intent"]["name"]
        assert a["intent"]["confidence"] == pytest.approx(b["intent"]["confidence"], rel=1e-3)
        strip = [{k: v for k, v in e.items() if k != "confidence_entity"} for e in a["entities"]]
        assert strip == [
            {k: v for k, v in e.items() if k != "confidence_entity"} for e in b["entities"]
        ]
        for ea, eb in zip(a["entities"], b["entities"]):
            assert ea["confidence_entity"] == pytest.approx(eb["confidence_entity"], rel=1e-3)


def sentences() -> list[str]:
    """ATIS test lines of many lengths, raw text, an empty line and one without words."""
    atis = (DATA_DIR / "atis" / "test" / "seq.in").read_text().splitlines()[:70]
    return [*atis[:30], RAW, "", "?", "What's the fare from St. Louis at 5pm?", *atis[30:]]


@requires_data
def test_batched_results_equal_one_at_a_time(atis_ckpt, one_thread) -> None:
    tagger = tagger_of(atis_ckpt)
    texts = sentences()
    one = [tagger(text) for text in texts]
    batched = tagger.tag_batch(texts)
    assert_same_results(one, batched)
    for result, text in zip(batched, texts):
        check_schema(result, text)
    # The CLI's path: stdin in batches gives the same lines as one sentence at a time.
    out_batched, out_one = io.StringIO(), io.StringIO()
    stdin = "\n".join(texts) + "\n"
    tag(tag_cfg(f"ckpt_path={atis_ckpt}", "batch_size=16"), io.StringIO(stdin), out_batched)
    tag(tag_cfg(f"ckpt_path={atis_ckpt}", "batch_size=1"), io.StringIO(stdin), out_one)
    assert_same_results(
        [json.loads(x) for x in out_one.getvalue().splitlines()],
        [json.loads(x) for x in out_batched.getvalue().splitlines()],
    )


@requires_data
def test_table_only_on_request(atis_ckpt, one_thread) -> None:
    out = io.StringIO()
    tag(tag_cfg(f"ckpt_path={atis_ckpt}", f"text='{RAW}'", "format=table"), out=out)
    table = out.getvalue()
    assert table.startswith(f"text: {RAW}\n")
    assert "  denver  " in table and "intent: atis_" in table
    assert "slot: " in table and '"Denver" [21:27]' in table
    with pytest.raises(json.JSONDecodeError):
        json.loads(table.splitlines()[0])


@pytest.mark.parametrize(
    ("override", "message"),
    [("format=yaml", "format must be one of json, table"), ("batch_size=0", "batch_size must")],
)
def test_bad_options_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tag(tag_cfg("ckpt_path=unused.ckpt", override))


@requires_data
def test_a_char_lm_checkpoint_is_refused(cfg_factory, tmp_path: Path, one_thread) -> None:
    train(cfg_factory("task=char_lm", "data.block_size=32", "test=false"))
    cfg = tag_cfg(f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}", "text=hi")
    with pytest.raises(CheckpointError, match="task=char_lm checkpoint"):
        tag(cfg)


def test_entities_are_chunks_with_offsets_and_their_lowest_confidence() -> None:
    text = "From New York to Boston, and to Dallas!"
    words = ["from", "new", "york", "to", "boston", "and", "to", "dallas"]
    tokens, at = [], 0
    for word in words:
        at = text.lower().index(word, at)
        tokens.append(Token(word, at, at + len(word)))
        at += len(word)
    tags = ["O", "B-fromloc", "I-fromloc", "O", "B-toloc", "O", "O", "I-toloc"]
    confidences = [0.9, 0.8, 0.6, 0.9, 0.7, 0.9, 0.9, 0.5]
    assert entities_of(text, tokens, tags, confidences) == [
        {"entity": "fromloc", "value": "New York", "start": 5, "end": 13,
         "confidence_entity": 0.6},
        {"entity": "toloc", "value": "Boston", "start": 17, "end": 23, "confidence_entity": 0.7},
        # I- after O opens a chunk (conlleval's rule, as the span F1 counts it)
        {"entity": "toloc", "value": "Dallas", "start": 32, "end": 38, "confidence_entity": 0.5},
    ]  # fmt: skip
    assert entities_of("", [], [], []) == []


@requires_data
def test_a_crf_tagger_with_char_features_gets_characters_and_crf_marginals(
    tmp_path: Path, one_thread
) -> None:
    """atis_best's kind of model: the tagger feeds it characters and decodes with its CRF;
    confidences are CRF marginals, and batches give what single sentences do."""
    overrides = ["task.module.decoder=crf", "model.char_features=cnn", "model.hidden_size=16"]
    # Trained enough for its transitions to matter: decoding a batch without the real-token
    # mask then changes tags (checked by hand), which the comparison below catches.
    fit = ["trainer.limit_train_batches=60", "task.module.optimizer.lr=0.02"]
    train(make_cfg(tmp_path, *overrides, *fit, "test=false"))
    tagger = tagger_of(tmp_path / "checkpoints" / "last.ckpt")
    assert tagger.chars is not None and tagger.module.crf is not None
    texts = sentences()
    batched = tagger.tag_batch(texts)
    assert_same_results([tagger(text) for text in texts], batched)
    for result, text in zip(batched, texts):
        check_schema(result, text)
    # An entity's confidence is the lowest CRF marginal of its tokens' tags.
    module, checked = tagger.module, 0
    for result in batched:
        if not result["entities"]:
            continue
        tokens = [t["text"] for t in result["tokens"]]
        words = torch.tensor([tagger.words.encode(tokens)])
        chars = pad_chars([encode_chars(tokens, tagger.chars)])
        with torch.inference_mode():
            scores, _ = module(words, torch.tensor([len(tokens)]), chars)
            marginals = module.crf.marginals(scores, words != 0, module.blocked_tags)[0]
        starts = [t["start"] for t in result["tokens"]]
        ends = [t["end"] for t in result["tokens"]]
        for entity in result["entities"]:
            span = range(starts.index(entity["start"]), ends.index(entity["end"]) + 1)
            expected = min(
                float(marginals[i, module.tag_names.index(result["tags"][i])]) for i in span
            )
            assert entity["confidence_entity"] == pytest.approx(expected, rel=1e-3)
            checked += 1
    assert checked


def test_data_without_sentence_labels_gives_no_intent(
    cfg_factory, tmp_path: Path, one_thread
) -> None:
    """NER files have no sentence labels: no intent layers are built, tag.py says "intent":
    null (not an invented "-" at 1.0), the table has no intent line, and the annotated-JSON
    reader takes that output back."""
    from seqmodels.data.annotated_files import example_of
    from seqmodels.data.conll_files import NO_LABEL

    fixture = REPO / "tests" / "fixtures" / "conll_ner"
    train(cfg_factory("data=conll", f"data.path={fixture}", "logger=none", "test=false"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not [k for k in saved if k.startswith("intent")]
    tagger = tagger_of(ckpt)
    result = tagger("EU rejects German call")
    assert result["intent"] is None and len(result["tags"]) == 4
    assert tagger("")["intent"] is None
    assert "intent" not in tagger.table(result)
    out = io.StringIO()
    tag(tag_cfg(f"ckpt_path={ckpt}"), stdin=io.StringIO("EU rejects German call\n\n"), out=out)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["intent"] for line in lines] == [None, None]
    assert '"intent": null' in lines[0]
    assert example_of(json.loads(lines[0]), "tagged.jsonl:1").intent == NO_LABEL
