"""data=annotated: Rasa/Snips/spaCy/Prodigy/Doccano JSON(L) and tag.py's output as training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, run_train_cli, single_thread
from test_eval import eval_cfg

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.tag import Tagger
from seqmodels.commands.train import train
from seqmodels.core.errors import ConfigError, DatasetError
from seqmodels.data.annotated import AnnotatedDataModule
from seqmodels.data.annotated_files import read_annotated, read_examples
from seqmodels.data.chunks import chunks
from seqmodels.data.conll_files import read_conll
from seqmodels.data.convert import read_set, write_set
from seqmodels.nets import load_net
from seqmodels.plumbing.registry import DATA_MODULES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "conll_ner"
RASA = {
    "rasa_nlu_data": {
        "common_examples": [
            {
                "text": "Flights from Denver to New York, please",
                "intent": "flight",
                "entities": [
                    {"start": 13, "end": 19, "value": "Denver", "entity": "from_city"},
                    {"start": 23, "end": 31, "value": "New York", "entity": "to_city"},
                ],
            },
            {"text": "hello there", "intent": "greet", "entities": []},
        ],
        "entity_synonyms": [],
    }
}


def write_jsonl(path: Path, objects: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


def test_rasa_json_becomes_bio_tags_on_the_tag_py_split(tmp_path: Path) -> None:
    path = tmp_path / "nlu.json"
    path.write_text(json.dumps(RASA, indent=2), encoding="utf-8")
    (flight, greet), skipped = read_annotated(path)
    assert skipped == 0
    assert flight.words == ["Flights", "from", "Denver", "to", "New", "York", ",", "please"]
    assert flight.tags == ["O", "O", "B-from_city", "O", "B-to_city", "I-to_city", "O", "O"]
    assert (flight.intent, greet.intent, greet.tags) == ("flight", "greet", ["O", "O"])
    # Examples know the line of their object in a pretty-printed file.
    lines = path.read_text().splitlines()
    first, second = read_examples(path)
    assert lines[int(first.where.rsplit(":", 1)[1]) - 1].strip() == "{"
    assert '"hello there"' in lines[int(second.where.rsplit(":", 1)[1])]


def test_every_jsonl_shape_reads_the_same_tags(tmp_path: Path) -> None:
    text = "book a table at Luigi's in Rome"
    shapes = [
        {"text": text, "intent": "book", "entities": [{"start": 16, "end": 23, "entity": "place"},
                                                      {"start": 27, "end": 31, "label": "city"}]},
        {"text": text, "intent": {"name": "book", "confidence": 0.9},  # tag.py's output
         "entities": [{"entity": "place", "value": "Luigi's", "start": 16, "end": 23},
                      {"entity": "city", "value": "Rome", "start": 27, "end": 31}]},
        {"text": text, "intent": "book", "spans": [{"start": 16, "end": 23, "label": "place"},
                                                   {"start": 27, "end": 31, "label": "city"}]},
        {"text": text, "intent": "book", "label": [[27, 31, "city"], [16, 23, "place"]]},
        {"text": text, "intent": "book", "label": [[16, 24, "place"], [27, 31, "city"]]},  # " "
        {"text": "rejected", "spans": [], "answer": "reject"},  # Prodigy: skipped
        {"text": "   "},  # nothing to tag: skipped
    ]  # fmt: skip
    utterances, skipped = read_annotated(write_jsonl(tmp_path / "a.jsonl", shapes))
    assert skipped == 1 and len(utterances) == 5
    for u in utterances:
        assert u.words == ["book", "a", "table", "at", "Luigi's", "in", "Rome"]
        assert u.tags == ["O", "O", "O", "O", "B-place", "O", "B-city"]
        assert u.intent == "book"
    no_intent, _ = read_annotated(write_jsonl(tmp_path / "b.jsonl", [{"text": "x y"}]))
    assert no_intent[0].intent == "-"


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ({"start": 16, "end": 21, "entity": "place"}, "does not fall on token boundaries"),
        ({"start": 27, "end": 40, "entity": "city"}, "lies outside the text"),
        ({"start": 27, "end": 31, "value": "Roma", "entity": "city"}, "is not the text there"),
        ({"start": 16, "end": 31, "entity": "x"}, "overlaps entity"),
        ({"start": 27, "end": 31, "entity": "two words"}, "without spaces"),
    ],
)
def test_bad_spans_are_refused_naming_file_line_and_span(
    tmp_path: Path, entity: dict, message: str
) -> None:
    good = {"start": 27, "end": 31, "entity": "city"}
    objects = [{"text": "a b"}, {"text": "book a table at Luigi's in Rome", "entities": [good]}]
    if message == "overlaps entity":
        objects[1]["entities"].append(entity)
    else:
        objects[1]["entities"] = [entity]
    path = write_jsonl(tmp_path / "train.jsonl", objects)
    with pytest.raises(DatasetError, match=message) as err:
        read_annotated(path)
    assert str(err.value).startswith(f"{path}:2: entity ")
    assert "\n" not in str(err.value)


def test_snips_nlu_dataset(tmp_path: Path) -> None:
    snips = {
        "language": "en",
        "entities": {"snips/city": {}},
        "intents": {
            "GetWeather": {
                "utterances": [
                    {"data": [{"text": "weather in "},
                              {"text": "Paris", "entity": "snips/city", "slot_name": "city"},
                              {"text": " tomorrow"}]}
                ]
            }
        },
    }  # fmt: skip
    path = tmp_path / "snips.json"
    path.write_text(json.dumps(snips), encoding="utf-8")
    ((u,), _) = read_annotated(path)
    assert (u.words, u.tags, u.intent) == (
        ["weather", "in", "Paris", "tomorrow"],
        ["O", "O", "B-city", "O"],
        "GetWeather",
    )


def test_splits_by_file_name_and_seeded_fractions(tmp_path: Path) -> None:
    texts = [f"word{i} city{i}" for i in range(50)]
    objects = [{"text": t, "label": [[t.index(" ") + 1, len(t), "city"]]} for t in texts]
    one = write_jsonl(tmp_path / "all.jsonl", objects)
    dm = AnnotatedDataModule(path=str(one), valid_fraction=0.2, test_fraction=0.1, seed=3)
    dm.setup()
    sizes = {s: len(u) for s, u in dm.splits.items()}
    assert sizes == {"train": 35, "valid": 10, "test": 5}
    words = {s: {u.words[0] for u in us} for s, us in dm.splits.items()}
    assert not (words["train"] & words["valid"]) and not (words["train"] & words["test"])
    again = AnnotatedDataModule(path=str(one), valid_fraction=0.2, test_fraction=0.1, seed=3)
    again.setup()
    assert again.splits == dm.splits  # the same split for eval from a checkpoint
    # A folder's files by name, plus another file in a list: it trains.
    folder = tmp_path / "set"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", objects[:20])
    write_jsonl(folder / "dev.jsonl", objects[20:25])
    write_jsonl(folder / "test.jsonl", objects[25:30])
    extra = write_jsonl(tmp_path / "corrected.jsonl", objects[30:])
    union = AnnotatedDataModule(path=[str(folder), str(extra)])
    union.setup()
    assert {s: len(u) for s, u in union.splits.items()} == {"train": 40, "valid": 5, "test": 5}
    with pytest.raises(ConfigError, match="data.path="):
        AnnotatedDataModule(path=None)
    with pytest.raises(DatasetError, match="does not exist"):
        AnnotatedDataModule(path=str(tmp_path / "nope.jsonl")).prepare_data()


def test_train_eval_and_tag_from_an_annotated_checkpoint(tmp_path: Path) -> None:
    """CoNLL -> JSONL -> data=annotated trains; eval rebuilds the data from the checkpoint; and
    what the Tagger prints reads back as the same tokens and tags."""
    jsonl = tmp_path / "jsonl"
    write_set(read_set(FIXTURE), jsonl, "jsonl")
    out = tmp_path / "run"
    overrides = ["data=annotated", f"data.path={jsonl}", "data.batch_size=2", "logger=none"]
    with single_thread():
        metrics = train(make_cfg(out, *overrides, "trainer.max_epochs=2"))
    assert "test/f1" in metrics
    (ckpt,) = (out / "checkpoints").glob("epoch_*.ckpt")  # the best, which train() tested
    stored = torch.load(ckpt, weights_only=True)["config"]["data"]
    assert DATA_MODULES[stored["_target_"]] is AnnotatedDataModule
    with single_thread():
        evaluated = evaluate(eval_cfg(ckpt, tmp_path / "eval"))
    assert evaluated["test/f1"] == pytest.approx(metrics["test/f1"], rel=1e-5)
    assert (tmp_path / "eval" / "predictions.conll").is_file()

    net, checkpoint = load_net(ckpt, data_kind="slot_filling")
    tagger = Tagger(net, checkpoint["hyper_parameters"]["vocabs"])
    texts = ["Peter Blackburn visits BRUSSELS, EU.", "", "German lamb"]
    printed = tmp_path / "tagged.jsonl"
    printed.write_text("".join(json.dumps(tagger(t)) + "\n" for t in texts), encoding="utf-8")
    utterances, skipped = read_annotated(printed)
    assert skipped == 1  # the blank line
    for u, result in zip(utterances, [tagger(t) for t in texts if t]):
        assert u.words == [t["text"] for t in result["tokens"]]
        assert chunks(u.tags) == chunks(result["tags"])  # its entities (as valid BIO)
        # NER data has no sentence labels: tag.py says "intent": null, read back as none.
        assert result["intent"] is None and u.intent == "-"


def test_a_bad_span_stops_train_py_with_one_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [{"text": "fly to Boston", "entities": [{"start": 7, "end": 10, "entity": "city"}]}],
    )
    result = run_train_cli("data=annotated", f"data.path={path}", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}:1: entity [7, 10] city 'Bos' does not fall on token")


def test_conll_round_trip_through_jsonl_is_identical(tmp_path: Path) -> None:
    original = read_set(FIXTURE)
    write_set(original, tmp_path / "conll1", "conll")
    write_set(read_set(tmp_path / "conll1"), tmp_path / "jsonl", "jsonl")
    write_set(read_set(tmp_path / "jsonl"), tmp_path / "conll2", "conll")
    for split in ("train", "valid", "test"):
        first = (tmp_path / "conll1" / f"{split}.txt").read_text()
        assert first == (tmp_path / "conll2" / f"{split}.txt").read_text()
        assert read_conll(tmp_path / "conll2" / f"{split}.txt") == read_conll(
            FIXTURE / f"{split}.txt"
        )


SNIPS_BAD = {
    "body_list": ('{"intents": {\n "greet": []\n}}', 2, "intent 'greet' must be an object"),
    "utt_str": (
        '{"intents": {"greet": {"utterances": [\n {"data": [{"text": "hi"}]},\n'
        ' "hello there"\n]}}}',
        3,
        "a Snips utterance must be an object",
    ),
    "chunk_str": (
        '{"intents": {"greet": {"utterances": [\n {"data": [\n  "hi"\n ]}\n]}}}',
        3,
        'a Snips chunk must be an object with "text"',
    ),
    "chunk_int": (
        '{"intents": {"greet": {"utterances": [{"data": [\n  {"text": 5}\n]}]}}}',
        2,
        'a Snips chunk must be an object with "text"',
    ),
    "space_slot": (
        '{"intents": {"greet": {"utterances": [\n'
        ' {"data": [{"text": "hi"}, {"text": "  ", "slot_name": "x"}]}\n]}}}',
        2,
        "entity [2, 4] x covers only spaces",
    ),
}


@pytest.mark.parametrize("case", SNIPS_BAD)
def test_a_malformed_snips_file_is_one_error_naming_file_and_line(tmp_path: Path, case) -> None:
    text, line, message = SNIPS_BAD[case]
    path = tmp_path / "snips.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        read_annotated(path)
    assert str(err.value).startswith(f"{path}:{line}: {message}"), str(err.value)


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([{"text": "hi", "entities": "0-2"}], "'entities' must be a list of entities, got \"0-2\""),
        ([{"text": "hi", "spans": {"start": 0}}], "'spans' must be a list of entities"),
        (
            [{"text": "hi there", "tokens": [{"text": ["x"], "start": 0, "end": 2}, "there"]}],
            "a token's text must be a string",
        ),
        (
            [{"text": "hi  there", "entities": [{"start": 2, "end": 4, "entity": "x"}]}],
            "entity [2, 4] x covers only spaces: '  '",
        ),
    ],
)
def test_a_malformed_example_is_refused_not_read_otherwise(
    tmp_path: Path, objects: list, message: str
) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "ok"}, *objects])
    with pytest.raises(DatasetError) as err:
        read_annotated(path)
    assert str(err.value).startswith(f"{path}:2: {message}"), str(err.value)


def test_a_non_object_example_in_a_json_list_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rasa.json"
    path.write_text(
        '{"rasa_nlu_data": {"common_examples": [\n  {"text": "hi"},\n  ["hi"]\n]}}',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match="an example must be a JSON object, got list") as err:
        read_annotated(path)
    assert str(err.value).startswith(f"{path}:3: ")
    listed = tmp_path / "list.json"
    listed.write_text('[\n  {"text": "hi"},\n\n  "hello"\n]', encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        read_annotated(listed)
    assert str(err.value).startswith(f"{listed}:4: an example must be a JSON object, got string")


def test_a_utf8_bom_is_read(tmp_path: Path) -> None:
    for name, body in [("a.jsonl", '{"text": "hi there"}\n'), ("b.json", json.dumps(RASA))]:
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + body.encode())
        utterances, _ = read_annotated(path)
        assert utterances[0].words[0] in ("hi", "Flights")


def test_a_malformed_snips_file_stops_train_py_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "snips.json"
    path.write_text(SNIPS_BAD["utt_str"][0], encoding="utf-8")
    result = run_train_cli("data=annotated", f"data.path={path}", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}:3: a Snips utterance must be an object")


def test_eval_from_another_folder_finds_relative_data_paths(tmp_path: Path, monkeypatch) -> None:
    """data.path as typed (relative) is stored absolute, so eval.py rebuilds the split anywhere."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_set(read_set(FIXTURE), tmp_path / "a" / "jsonl", "jsonl")
    write_jsonl(tmp_path / "a" / "more.jsonl", [{"text": "Anna flies", "intent": "-"}])
    monkeypatch.chdir(tmp_path / "a")
    out = tmp_path / "run"
    overrides = ["data=annotated", "data.path=[jsonl,more.jsonl]", "logger=none", "test=false"]
    with single_thread():
        train(make_cfg(out, *overrides, "data.batch_size=2", "trainer.max_epochs=1"))
    ckpt = out / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, weights_only=True)["config"]["data"]["path"]
    assert stored == [str(tmp_path / "a" / "jsonl"), str(tmp_path / "a" / "more.jsonl")]
    monkeypatch.chdir(tmp_path / "b")
    with single_thread():
        assert "test/f1" in evaluate(eval_cfg(ckpt, tmp_path / "eval"))
