"""Token files: encoded once, read a slice at a time, re-encoded when the text changes; bytes."""

from __future__ import annotations

import io
import os
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seqmodels.commands.generate import generate
from seqmodels.core.errors import DatasetError
from seqmodels.data import CharLMDataModule, token_file
from seqmodels.data.streams import Streams
from seqmodels.data.text_codec import TextCodec
from seqmodels.data.token_file import TokenSpan, encode_file, open_bytes, scan_vocab
from seqmodels.plumbing.cli import CONFIG_DIR

# ASCII, 2-, 3- and 4-byte characters, with long ASCII stretches between them
MIXED = ("plain ascii text\n" * 40 + "naïve café – ünïcödé 中文字 🙂\n") * 60


@pytest.fixture
def small_chunks(monkeypatch) -> None:
    """Chunks and pieces of a few bytes: every boundary case of the UTF-8 cutting is met."""
    monkeypatch.setattr(token_file, "CHUNK", 97)
    pieces = token_file._pieces
    monkeypatch.setattr(token_file, "_pieces", lambda chunk: pieces(chunk, size=13))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def decode(tokens: token_file.TokenFile) -> str:
    return "".join(tokens.vocab[i] for i in tokens.array().tolist())


@pytest.mark.parametrize("chunked", [False, True])
def test_encoding_matches_a_plain_python_reference(chunked, tmp_path, request) -> None:
    if chunked:
        request.getfixturevalue("small_chunks")
    text = write(tmp_path / "mixed.txt", MIXED)
    vocab = scan_vocab(text, tmp_path / "cache")
    assert vocab == sorted(set(MIXED))
    tokens = encode_file(text, vocab, tmp_path / "cache")
    stoi = {ch: i for i, ch in enumerate(vocab)}
    assert tokens.array().tolist() == [stoi[ch] for ch in MIXED]
    assert tokens.dtype == np.uint8


def test_a_large_vocabulary_takes_wider_ids(tmp_path: Path) -> None:
    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300)) * 3
    path = write(tmp_path / "cjk.txt", text)
    tokens = encode_file(path, scan_vocab(path, tmp_path), tmp_path)
    assert tokens.dtype == np.uint16 and decode(tokens) == text


def test_cached_tokens_are_reused_and_a_changed_text_is_encoded_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write(tmp_path / "t.txt", "abc abc\n" * 100)
    first = encode_file(path, scan_vocab(path, cache), cache)
    written = first.path.stat().st_mtime_ns
    again = encode_file(path, scan_vocab(path, cache), cache)
    assert again.path == first.path and again.path.stat().st_mtime_ns == written  # not rewritten
    write(path, "abd abd\n" * 120)  # new text, new size (and modification time)
    changed = encode_file(path, scan_vocab(path, cache), cache)
    assert decode(changed) == "abd abd\n" * 120
    other_vocab = encode_file(path, list(" \nabcd"), cache)  # another vocabulary: another file
    assert other_vocab.path != changed.path and decode(other_vocab) == "abd abd\n" * 120
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]  # no temporary left


def test_characters_outside_a_given_vocabulary_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "abcabc" * 10 + "é")
    with pytest.raises(
        DatasetError, match=r"outside the vocabulary: \['é'\] \(the first at character 60\)"
    ):
        encode_file(path, list("abc"), tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".uint8", ".part")]


def test_non_utf8_text_names_the_offset_and_bytes_read_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9 au lait\n" * 50)
    with pytest.raises(DatasetError, match=r"invalid byte 0xe9 at byte offset 3; data.unit=byte"):
        scan_vocab(path, tmp_path / "cache")
    tokens = open_bytes(path)
    assert tokens.path == path.resolve() and bytes(tokens.array()) == path.read_bytes()


def test_reverse_reads_each_part_backwards(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "".join(chr(97 + i % 26) for i in range(4000)))
    common = {"path": str(path), "cache_dir": str(tmp_path / "c"), "block_size": 8}
    forward, backward = CharLMDataModule(**common), CharLMDataModule(**common, reverse=True)
    forward.setup(), backward.setup()
    for part in ("train", "val", "test"):
        f, b = forward.parts[part], backward.parts[part]
        assert torch.equal(b.read(0, len(b)), f.read(0, len(f)).flip(0))
        assert torch.equal(b.read(5, 9), f.read(0, len(f)).flip(0)[5:9])


@pytest.mark.parametrize("reverse", [False, True])
def test_streams_over_a_memory_map_equal_streams_over_a_tensor(reverse, tmp_path) -> None:
    path = write(tmp_path / "t.txt", MIXED)
    tokens = encode_file(path, scan_vocab(path, tmp_path), tmp_path)
    span = TokenSpan(tokens).part(7, tokens.count - 3)
    span = span.reversed() if reverse else span
    tensor = span.read(0, len(span))
    for exact in (False, True):
        mapped = list(Streams(span, 5, 16, exact=exact, rank=1, world_size=2))
        in_memory = list(Streams(tensor, 5, 16, exact=exact, rank=1, world_size=2))
        assert len(mapped) == len(in_memory) > 0
        for (x1, y1), (x2, y2) in zip(mapped, in_memory):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_setup_keeps_nothing_proportional_to_the_text(tmp_path: Path, monkeypatch) -> None:
    """24 MB of text: encoding peaks near a chunk (and the tables of all code points, 6 MB);
    setup and a batch keep almost nothing."""
    monkeypatch.setattr(token_file, "CHUNK", 1 << 20)
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write(MIXED * (24_000_000 // len(MIXED.encode())))
    tracemalloc.start()
    try:
        data = CharLMDataModule(path=str(path), cache_dir=str(tmp_path / "c"), block_size=64)
        data.setup()
        next(iter(data.train_dataloader()))
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert peak < size / 2, f"peak {peak} bytes for a {size}-byte text"
    assert current < 2 << 20, f"{current} bytes kept after setup"
    if Path("/proc/self/status").is_file():  # a whole epoch maps no page of the token file
        before = file_pages_kb()
        for _ in data.train_dataloader():
            pass
        assert file_pages_kb() - before < 4096


def file_pages_kb() -> int:
    """The process's resident file-backed memory (what a memory map's touched pages add)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


def test_pickled_spans_carry_the_file_name_not_the_ids(tmp_path: Path) -> None:
    import pickle

    path = write(tmp_path / "t.txt", "abcdefgh" * 10_000)
    span = TokenSpan(encode_file(path, list("abcdefgh"), tmp_path)).part(10, 70_000)
    span.read(0, 5)  # opens the map
    blob = pickle.dumps(span)
    assert len(blob) < 2000
    assert torch.equal(pickle.loads(blob).read(100, 200), span.read(100, 200))


def test_byte_codec_round_trips_and_shows_invalid_bytes_as_replacement(tmp_path) -> None:
    codec = TextCodec("byte")
    symbols = codec.encode("héllo 🙂")
    assert len(symbols) == len("héllo 🙂".encode()) and codec.decode(symbols) == "héllo 🙂"
    assert codec.decode("ab\xff\xc3") == "ab\ufffd\ufffd"
    stream = codec.streaming()
    pieces = [stream.feed(ch) for ch in codec.encode("é🙂") + "\xff"] + [stream.flush()]
    assert pieces == ["", "é", "", "", "", "🙂", "\ufffd", ""]
    backward = TextCodec("char", reverse=True)
    assert backward.encode("abc") == "cba" and backward.decode("cba" + "zy") == "yzabc"
    assert backward.streaming() is None
    assert TextCodec.of({}).unit == "char" and TextCodec.of({"unit": "byte"}).unit == "byte"


def test_byte_unit_trains_on_any_file(cfg_factory, tmp_path: Path, one_thread) -> None:
    from seqmodels.commands.train import train

    path = tmp_path / "binary.dat"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8)))
    cfg = cfg_factory(
        "task=char_lm",
        f"data.path={path}",
        "data.unit=byte",
        "data.block_size=16",
        f"data.cache_dir={tmp_path}/c",
    )
    metrics = train(cfg)
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / np.log(2))
    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    saved = torch.load(ckpt, weights_only=True)
    assert (
        saved["config"]["data"]["unit"] == "byte" and len(saved["hyper_parameters"]["vocab"]) == 256
    )
    assert not os.path.exists(tmp_path / "c")  # bytes need no token file
    out = io.StringIO()
    (sample,) = generate(generate_cfg(ckpt, "prompt='é'", "length=40"), out=out)
    assert sample.startswith("é") and out.getvalue() == sample + "\n"
    assert "\ufffd" in sample  # random bytes are mostly not UTF-8: shown as U+FFFD


def generate_cfg(ckpt: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            config_name="generate", overrides=[f"ckpt_path={ckpt}", "seed=0", *overrides]
        )


def test_a_backward_model_writes_what_comes_before_the_prompt(cfg_factory, tmp_path, one_thread):
    from seqmodels.commands.train import train

    path = write(tmp_path / "t.txt", "abcdefgh\n" * 800)
    train(
        cfg_factory("task=char_lm", f"data.path={path}", "data.reverse=true", "data.block_size=16")
    )
    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    assert torch.load(ckpt, weights_only=True)["config"]["data"]["reverse"] is True
    out = io.StringIO()
    (sample,) = generate(generate_cfg(ckpt, "prompt=abc", "length=12"), out=out)
    assert sample.endswith("abc") and len(sample) == 15 and out.getvalue() == sample + "\n"


def test_a_checkpoint_from_before_token_files_still_evaluates(cfg_factory, tmp_path, one_thread):
    """Checkpoints written before data.unit / data.reverse / data.cache_dir existed."""
    from seqmodels.commands.evaluate import evaluate
    from seqmodels.commands.train import train

    path = write(tmp_path / "t.txt", "the cat sat on the mat\n" * 300)
    train(cfg_factory("task=char_lm", f"data.path={path}", "data.block_size=16"))
    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    saved = torch.load(ckpt, weights_only=True)
    for key in ("unit", "reverse", "cache_dir"):
        del saved["config"]["data"][key]
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    results = []
    for checkpoint in (ckpt, old):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                config_name="eval",
                overrides=[
                    f"ckpt_path={checkpoint}",
                    f"paths.output_dir={tmp_path}/eval",
                    "trainer.accelerator=cpu",
                    "+trainer.enable_progress_bar=false",
                ],
            )
        results.append(evaluate(cfg))
    assert results[0] == results[1] and "test/bpc" in results[1]


def test_bad_options_are_named(tmp_path: Path) -> None:
    from seqmodels.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.unit must be one of char, byte, got 'word'$"):
        CharLMDataModule(unit="word")
    with pytest.raises(ConfigError, match=r"^data=text_file needs data.path=<a text file>$"):
        CharLMDataModule(name="text_file", data_dir=str(tmp_path)).prepare_data()
    with pytest.raises(ConfigError, match=r"^data.reverse must be true or false, got 'yes'$"):
        CharLMDataModule(reverse="yes")


def test_a_text_edited_in_place_with_its_size_and_time_kept_is_encoded_again(tmp_path) -> None:
    """rsync -a, cp -p and tar keep a file's size and modification time: the content decides."""
    cache = tmp_path / "cache"
    path = write(tmp_path / "t.txt", "abc abc\n" * 100)
    first = encode_file(path, scan_vocab(path, cache), cache)
    mapped = first.array()  # a run reading the old ids
    stat = path.stat()
    write(path, "cab cab\n" * 100)  # same characters, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    again = encode_file(path, scan_vocab(path, cache), cache)
    assert decode(again) == "cab cab\n" * 100
    # A new name; the old file is removed, but a run that has it mapped keeps reading it.
    assert again.path != first.path and not first.path.exists()
    assert "".join(first.vocab[i] for i in mapped.tolist()) == "abc abc\n" * 100


def test_a_large_text_is_fingerprinted_by_sampled_blocks(tmp_path, monkeypatch) -> None:
    from seqmodels.data import token_cache

    monkeypatch.setattr(token_cache, "HASH_WHOLE", 1000)
    monkeypatch.setattr(token_cache, "SAMPLE", 10)
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 5000)
    before = token_cache.fingerprint(path)
    stat = path.stat()
    path.write_bytes(b"a" * 4990 + b"b" * 10)  # the last block changed: always sampled
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert token_cache.fingerprint(path) != before


def test_token_files_get_the_umask_mode_like_checkpoints(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write(tmp_path / "t.txt", "abc abc\n" * 10)
        tokens = encode_file(path, scan_vocab(path, tmp_path / "c"), tmp_path / "c")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "c").iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes
    assert tokens.path.name in modes


def test_token_files_go_to_the_users_cache_not_the_data_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = write(data_dir / "t.txt", "abc abc\n" * 100)
    data = CharLMDataModule(path=str(path), data_dir=str(data_dir), block_size=8)
    data.setup()
    assert data.tokens_dir == tmp_path / "xdg" / "seqmodels" / "tokens"
    assert any(data.tokens_dir.glob("t-*.uint8"))
    assert sorted(p.name for p in data_dir.iterdir()) == ["t.txt"]  # nothing written beside it


def test_an_unwritable_cache_falls_back_with_one_line(tmp_path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = write(tmp_path / "t.txt", "abc abc\n" * 100)
    with caplog.at_level("WARNING"):
        for _ in range(2):
            data = CharLMDataModule(path=str(path), block_size=8)
            data.setup()
    assert data.tokens_dir.is_relative_to(tmp_path / "tmp")
    lines = [r.getMessage() for r in caplog.records if "cannot write token files" in r.message]
    assert len(lines) == 1 and str(data.tokens_dir) in lines[0], lines


def test_an_unchanged_text_touched_keeps_one_token_file(tmp_path: Path) -> None:
    """The name holds size and content, not the modification time: touching a text reuses its
    token file; an edit writes a new one and removes the old (its readers keep their maps)."""
    cache = tmp_path / "cache"
    path = write(tmp_path / "t.txt", "abc abc\n" * 100)
    vocab = scan_vocab(path, cache)
    first = encode_file(path, vocab, cache)
    for step in range(3):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + (step + 1) * 10**9))
        assert encode_file(path, vocab, cache).path == first.path
    write(path, "cab cab\n" * 100)  # the same size, other content
    edited = encode_file(path, vocab, cache)
    assert decode(edited) == "cab cab\n" * 100
    token_files = [p for p in cache.iterdir() if p.suffix == ".uint8"]
    assert token_files == [edited.path]
    assert sorted(p.name for p in cache.iterdir() if p.name.endswith(".uint8.json")) == [
        edited.path.name + ".json"
    ]


def test_the_temporary_fallback_is_private(tmp_path, monkeypatch, caplog) -> None:
    """/tmp/seqmodels-<uid>/tokens is made 0o700, and refused unless it is this user's own and
    not writable by others (a predictable name in a folder everyone writes to)."""
    from seqmodels.data.token_cache import default_cache_dir

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = default_cache_dir()
    assert (folder.parent.stat().st_mode & 0o777) == 0o700
    folder.parent.chmod(0o777)  # as another user could have made it
    with pytest.raises(DatasetError, match="data.cache_dir"):
        default_cache_dir()
