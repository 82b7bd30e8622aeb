"""Downloads from an HTTP server on 127.0.0.1: the cache never holds a partial or wrong file."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from seqmodels.data import download
from seqmodels.data.download import DatasetError, RemoteFile, download_file, ensure_dataset

TEXT = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
SHA = hashlib.sha256(TEXT).hexdigest()
WRONG = "0" * 64


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files from the served folder; ``/cut/<name>`` sends half a file, then hangs up."""

    def do_GET(self) -> None:
        if self.path.startswith("/cut/"):
            body = (Path(self.directory) / self.path.removeprefix("/cut/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        super().do_GET()

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` serving ``tmp_path/served``."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "input.txt").write_bytes(TEXT)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused, as offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/input.txt"


def assert_cache_clean(folder: Path) -> None:
    """No file at all: neither the destination nor a leftover temporary ``.part``."""
    assert not folder.exists() or list(folder.iterdir()) == []


def test_download_lands_only_when_the_hash_matches(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "tiny" / "input.txt"
    download_file(f"{server}/input.txt", dest, SHA)
    assert dest.read_bytes() == TEXT
    assert [p.name for p in dest.parent.iterdir()] == ["input.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_downloaded_files_get_the_usual_permissions(server: str, tmp_path: Path, umask) -> None:
    """Readable by the others who share a data folder (mkstemp alone would leave 0600)."""
    old = os.umask(umask)
    try:
        dest = download_file(f"{server}/input.txt", tmp_path / "cache" / "input.txt", SHA)
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask


def test_wrong_hash_names_url_and_expected_hash_and_writes_nothing(server, tmp_path) -> None:
    dest = tmp_path / "cache" / "tiny" / "input.txt"
    url = f"{server}/input.txt"
    with pytest.raises(DatasetError) as err:
        download_file(url, dest, WRONG)
    message = str(err.value)
    assert url in message and f"expected {WRONG}" in message and SHA in message
    assert_cache_clean(dest.parent)


def test_no_network_names_url_and_expected_hash_and_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "tiny" / "input.txt"
    url = closed_port_url()
    with pytest.raises(DatasetError) as err:
        download_file(url, dest, SHA, timeout=5)
    message = str(err.value)
    assert f"could not download {url}" in message and f"expected sha256 {SHA}" in message
    assert "SEQMODELS_DATA_DIR" in message  # how to provide the file without network
    assert_cache_clean(dest.parent)


def test_connection_lost_midway_writes_nothing(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "tiny" / "input.txt"
    url = f"{server}/cut/input.txt"
    with pytest.raises(DatasetError, match=f"could not download {url} \\(connection closed after"):
        download_file(url, dest, SHA, timeout=5)
    assert_cache_clean(dest.parent)


def test_http_error_names_url(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "tiny" / "input.txt"
    with pytest.raises(
        DatasetError, match=rf"could not download {server}/nope.txt \(HTTP Error 404"
    ):
        download_file(f"{server}/nope.txt", dest, SHA, timeout=5)
    assert_cache_clean(dest.parent)


@pytest.fixture
def registry(monkeypatch, server: str) -> str:
    """A dataset ``tiny`` in our registry, served by the local server."""
    monkeypatch.setitem(
        download.DATASETS, "tiny", [RemoteFile("input.txt", f"{server}/input.txt", SHA)]
    )
    return server


def test_ensure_dataset_downloads_once_then_uses_the_cache(registry, tmp_path: Path) -> None:
    root = ensure_dataset("tiny", tmp_path / "cache")
    assert (root / "input.txt").read_bytes() == TEXT
    download.DATASETS["tiny"] = [RemoteFile("input.txt", closed_port_url(), SHA)]
    assert ensure_dataset("tiny", tmp_path / "cache") == root  # no network needed now


def test_ensure_dataset_refuses_a_wrong_cached_file(registry, tmp_path: Path) -> None:
    cached = tmp_path / "cache" / "tiny" / "input.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(TEXT[:-1])
    with pytest.raises(DatasetError, match=rf"{cached} has sha256 \w+, expected {SHA}.*delete it"):
        ensure_dataset("tiny", tmp_path / "cache")


def test_ensure_dataset_without_download_says_where_to_get_it(registry, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=rf"input.txt is missing; download it from {registry}"):
        ensure_dataset("tiny", tmp_path / "cache", download=False)
    assert_cache_clean(tmp_path / "cache" / "tiny")


def test_training_on_a_dataset_that_fails_to_download(cfg_factory, registry, tmp_path) -> None:
    """Through ``train()``: the char LM's dataset comes from the registry entry."""
    from seqmodels.commands.train import train

    download.DATASETS["tiny"] = [RemoteFile("input.txt", f"{registry}/input.txt", WRONG)]
    cfg = cfg_factory("task=char_lm", "data.name=tiny", f"paths.data_dir={tmp_path}/cache")
    cfg.data.download = True  # (the test config turns downloads off)
    with pytest.raises(DatasetError, match=f"download of {registry}/input.txt has sha256 {SHA}"):
        train(cfg)
    assert_cache_clean(tmp_path / "cache" / "tiny")
