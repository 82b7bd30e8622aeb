"""enwik8, text8 and PTB characters: pinned archives from a local HTTP server, canonical splits."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import logging
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from seqmodels.data import CharLMDataModule, corpora, download
from seqmodels.data.corpora import Layout
from seqmodels.data.download import DatasetError, RemoteFile, ensure_dataset

ENWIK = bytes(range(256)) * 4 + "<page>héllo</page>\n".encode() * 20  # 1424 bytes, not UTF-8
PTB = {
    "train": " a e r _ b a n k n o t e \n m e m o t e c \n" * 30,
    "valid": " t h e _ c a t \n" * 20,
    "test": " s a t _ o n \n" * 20,
}


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Served(type(Path())):
    """A folder the test server serves, with its ``url``."""

    url: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A folder served at ``http://127.0.0.1:<port>`` (``served.url``)."""
    folder = Served(tmp_path / "served")
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    folder.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield folder
    httpd.shutdown()
    httpd.server_close()


def make_zip(path: Path, member: str, data: bytes) -> bytes:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
    return path.read_bytes()


def make_tgz(path: Path, members: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


@pytest.fixture
def enwik8(served: Path, monkeypatch) -> bytes:
    """A small enwik8.zip on the server, pinned by sha256, split 1000 / 200 / 224 bytes."""
    archive = make_zip(served / "enwik8.zip", "enwik8", ENWIK)
    remote = RemoteFile(
        "enwik8.zip",
        f"{served.url}/enwik8.zip",
        sha256=hashlib.sha256(archive).hexdigest(),
        size=len(archive),
        members=(("enwik8", "enwik8"),),
    )
    monkeypatch.setitem(download.DATASETS, "enwik8", [remote])
    monkeypatch.setitem(corpora.LAYOUTS, "enwik8", Layout({"text": "enwik8"}, (1000, 200, 224)))
    return ENWIK


def test_enwik8_comes_from_its_zip_with_the_canonical_split(enwik8, tmp_path) -> None:
    data = CharLMDataModule(
        name="enwik8", data_dir=str(tmp_path / "cache"), unit="byte", block_size=16, batch_size=8
    )
    data.prepare_data()
    data.setup()
    assert (tmp_path / "cache" / "enwik8" / "enwik8").read_bytes() == enwik8
    parts = {k: bytes(v.read(0, len(v)).tolist()) for k, v in data.parts.items()}
    assert parts == {"train": enwik8[:1000], "val": enwik8[1000:1200], "test": enwik8[1200:]}
    assert len(data.vocab) == 256


def test_val_and_test_are_reported_separately(enwik8, cfg_factory, tmp_path, one_thread) -> None:
    from seqmodels.commands.train import train

    cfg = cfg_factory(
        "task=char_lm",
        "data=enwik8",
        f"paths.data_dir={tmp_path}/cache",
        "data.block_size=16",
        "data.batch_size=8",
        "data.eval_window=32",
    )
    cfg.data.download = True
    metrics = train(cfg)
    assert metrics["test/bpc"] != pytest.approx(metrics["val/bpc"])
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / torch.log(torch.tensor(2.0)))


def test_a_text_shorter_than_the_canonical_split_is_refused(served, monkeypatch, tmp_path) -> None:
    archive = make_zip(served / "text8.zip", "text8", b"abc def " * 10)
    remote = RemoteFile(
        "text8.zip", f"{served.url}/text8.zip", size=len(archive), members=(("text8", "text8"),)
    )
    monkeypatch.setitem(download.DATASETS, "text8", [remote])
    data = CharLMDataModule(name="text8", data_dir=str(tmp_path / "cache"))
    data.prepare_data()
    with pytest.raises(DatasetError, match=r"text8 has 80 characters, fewer than the 100000000"):
        data.setup()


def test_a_size_only_entry_is_checked_and_warned_about(served, monkeypatch, tmp_path, caplog):
    archive = make_zip(served / "text8.zip", "text8", b"abc def " * 10)
    url = f"{served.url}/text8.zip"
    wrong = RemoteFile("text8.zip", url, size=len(archive) + 1, members=(("text8", "text8"),))
    monkeypatch.setitem(download.DATASETS, "text8", [wrong])
    with pytest.raises(DatasetError, match=rf"has size {len(archive)} bytes, expected"):
        ensure_dataset("text8", tmp_path / "cache")
    assert not (tmp_path / "cache" / "text8" / "text8.zip").exists()
    right = RemoteFile("text8.zip", url, size=len(archive), members=(("text8", "text8"),))
    monkeypatch.setitem(download.DATASETS, "text8", [right])
    with caplog.at_level(logging.WARNING, logger="seqmodels"):
        ensure_dataset("text8", tmp_path / "cache")
    assert "no published checksum" in caplog.text


def ptb_archive(served: Path) -> bytes:
    members = {
        f"./simple-examples/data/ptb.char.{split}.txt": text.encode() for split, text in PTB.items()
    }
    members["./simple-examples/data/ptb.train.txt"] = b"words we do not need\n"
    return make_tgz(served / "simple-examples.tgz", members)


def test_ptb_characters_come_from_the_tgz_one_symbol_a_character(served, monkeypatch, tmp_path):
    archive = ptb_archive(served)
    remote = RemoteFile(
        "simple-examples.tgz",
        f"{served.url}/simple-examples.tgz",
        md5=hashlib.md5(archive).hexdigest(),
        members=download.DATASETS["ptb_char"][0].members,  # the real entry's member names
    )
    monkeypatch.setitem(download.DATASETS, "ptb_char", [remote])
    data = CharLMDataModule(
        name="ptb_char", data_dir=str(tmp_path / "cache"), block_size=8, batch_size=4
    )
    data.prepare_data()
    data.setup()
    root = tmp_path / "cache" / "ptb_char"
    assert (root / "train.txt").read_text() == "aer_banknote\nmemotec\n" * 30
    assert (root / "test.txt").read_text() == "sat_on\n" * 20
    test = data.parts["test"]
    assert "".join(data.vocab.decode(test.read(0, len(test)).tolist())) == "sat_on\n" * 20
    assert data.vocab.itos == sorted(set("aer_banknote\nmemotec\nthe_cat\nsat_on\n"))


def test_a_wrong_md5_writes_nothing(served, monkeypatch, tmp_path: Path) -> None:
    ptb_archive(served)
    url = f"{served.url}/simple-examples.tgz"
    members = download.DATASETS["ptb_char"][0].members
    remote = RemoteFile("simple-examples.tgz", url, md5="0" * 32, members=members)
    monkeypatch.setitem(download.DATASETS, "ptb_char", [remote])
    with pytest.raises(DatasetError, match=rf"download of {url} has md5 \w+, expected 0{{32}}"):
        ensure_dataset("ptb_char", tmp_path / "cache")
    assert list((tmp_path / "cache" / "ptb_char").iterdir()) == []


def test_a_damaged_archive_is_named_with_what_to_do(monkeypatch, tmp_path: Path) -> None:
    root = tmp_path / "cache" / "enwik8"
    root.mkdir(parents=True)
    (root / "enwik8.zip").write_bytes(b"PK\x03\x04 not really a zip")
    remote = RemoteFile(
        "enwik8.zip", "http://127.0.0.1:9/x", size=21, members=(("enwik8", "enwik8"),)
    )
    monkeypatch.setitem(download.DATASETS, "enwik8", [remote])
    with pytest.raises(DatasetError, match=r"cannot extract enwik8 from .*delete the archive"):
        ensure_dataset("enwik8", tmp_path / "cache")
    assert sorted(p.name for p in root.iterdir()) == ["enwik8.zip"]


def test_the_registry_pins_the_published_checksums() -> None:
    """What docs/corpora.md cites: Hugging Face's enwik8 checksum, PaddlePaddle's PTB MD5,
    TensorFlow's text8.zip size."""
    (enwik8,) = download.DATASETS["enwik8"]
    assert enwik8.url == "http://mattmahoney.net/dc/enwik8.zip"
    assert enwik8.sha256 == "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc"
    (ptb,) = download.DATASETS["ptb_char"]
    assert ptb.md5 == "30177ea32e27c525793142b6bf2c8e2d" and ptb.sha256 is None
    (text8,) = download.DATASETS["text8"]
    assert text8.size == 31344016 and text8.sha256 is None and text8.md5 is None
