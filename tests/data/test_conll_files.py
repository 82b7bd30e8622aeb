"""The CoNLL column reader on edge cases, with small files written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqmodels.core.errors import DatasetError
from seqmodels.data.conll_files import iob1_to_iob2, read_conll

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "conll_ner"


def write(tmp_path: Path, data: str | bytes, name: str = "f.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def sentences(path: Path, **kwargs) -> list[tuple[list[str], list[str], str]]:
    return [(u.words, u.tags, u.intent) for u in read_conll(path, **kwargs)]


def test_fixture_docstart_skipped_and_last_column_is_the_tag() -> None:
    sents = sentences(FIXTURE / "train.txt")
    assert len(sents) == 6
    assert sents[0][0][:3] == ["EU", "rejects", "German"]
    assert sents[0][1][:3] == ["B-ORG", "O", "B-MISC"]
    assert all(label == "-" for *_, label in sents)
    # A configured column: the chunk tags (column 2).
    assert sentences(FIXTURE / "train.txt", tag_column=2)[1][1] == ["B-NP", "I-NP"]


EXPECTED = [(["a", "b"], ["B-x", "I-x"], "-"), (["c"], ["O"], "-")]


@pytest.mark.parametrize(
    "text",
    [
        "a B-x\nb I-x\n\nc O\n",  # plain
        "a B-x\nb I-x\n\nc O\n\n\n\n",  # trailing blank lines
        "\n\na B-x\nb I-x\n\n\n\nc O\n",  # leading and repeated blank lines
        "a B-x\r\nb I-x\r\n\r\nc O\r\n",  # CRLF
        "a\tB-x\nb \t I-x\n\nc    O",  # tabs and runs of spaces; no final newline
        "a B-x\nb I-x\n   \t\nc O\n",  # a blank line holding only whitespace
        "-DOCSTART- O\n\na B-x\nb I-x\n-DOCSTART- O\nc O\n",  # DOCSTART closes a sentence
    ],
)
def test_layout_edge_cases(tmp_path: Path, text: str) -> None:
    assert sentences(write(tmp_path, text)) == EXPECTED


def test_iob1_is_converted_to_iob2(tmp_path: Path) -> None:
    text = "a I-x\nb I-x\nc B-x\nd I-y\ne O\nf I-x\n"
    [(words, tags, _)] = sentences(write(tmp_path, text), scheme="IOB1")
    assert tags == ["B-x", "I-x", "B-x", "B-y", "O", "B-x"]
    assert iob1_to_iob2(["I-x", "I-y", "I-y"]) == ["B-x", "B-y", "I-y"]


def test_iob1_tags_in_a_bio_file_are_read_as_conlleval_reads_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The original CoNLL-2003 files are IOB1: read as BIO, their chunks open with I-, which a
    BIO CRF never decodes; they are converted, with one warning naming file and line."""
    path = write(tmp_path, "a B-x\nb I-x\n\nc O\nd I-y\ne I-y\nf B-y\n\ng I-x\n")
    with caplog.at_level("WARNING"):
        tags = [t for _, t, _ in sentences(path)]
    assert tags == [["B-x", "I-x"], ["O", "B-y", "I-y", "B-y"], ["B-x"]]
    [warning] = caplog.messages
    assert warning.startswith(f"{path}:5: 2 chunks open with I- (IOB1 tags")
    assert "data.scheme=IOB1" in warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        sentences(path, scheme="IOB1")
        sentences(FIXTURE / "train.txt")  # IOB2 as it should be: nothing to say
    assert caplog.messages == []


def test_iobes_is_read_as_is_and_checked(tmp_path: Path) -> None:
    text = "a B-x\nb E-x\nc S-y\nd O\n"
    assert sentences(write(tmp_path, text), scheme="IOBES")[0][1] == ["B-x", "E-x", "S-y", "O"]
    with pytest.raises(DatasetError, match=r"f\.txt:2: tag 'E-x' is not BIO"):
        read_conll(write(tmp_path, text), scheme="BIO")


def test_sentence_labels_from_comments(tmp_path: Path) -> None:
    text = "# label = greet\n# id = 7\nhi O\nbob B-per\n\n# label = bye\nbye O\n\nno O\n"
    assert [s[2] for s in sentences(write(tmp_path, text))] == ["greet", "bye", "-"]
    assert [s[2] for s in sentences(write(tmp_path, text), label_key=None)] == ["-"] * 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a NN B-x\nb I-x\n", r"f\.txt:2: 2 columns, but the file's first token line has 3"),
        ("a B-x\n\nb NN O\n", r"f\.txt:3: 3 columns"),
        ("a B-x\nb X-x\n", r"f\.txt:2: tag 'X-x' is not BIO"),
        ("a B-x\nb Bx\n", r"f\.txt:2: tag 'Bx' is not BIO"),
        ("a\n", r"f\.txt:1: 1 column"),
        ("\n\n-DOCSTART- O\n\n", r"f\.txt holds no sentences"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_conll(write(tmp_path, text))


def test_missing_file_and_bad_scheme(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.txt does not exist"):
        read_conll(tmp_path / "nope.txt")
    with pytest.raises(DatasetError, match="data.scheme"):
        read_conll(write(tmp_path, "a O\n"), scheme="BILOU")
    with pytest.raises(DatasetError, match="data.tag_column=0"):
        read_conll(write(tmp_path, "a O\n"), tag_column=0)


def test_a_missing_split_file_names_its_option_and_the_files_there(tmp_path: Path) -> None:
    from seqmodels.data.conll import ConllDataModule

    for name in ("train.txt", "dev.txt", "test.txt"):
        write(tmp_path, "a B-x\nb O\n", name)
    data = ConllDataModule(path=str(tmp_path))
    data.prepare_data()
    with pytest.raises(DatasetError) as err:
        data.setup("fit")
    assert str(err.value) == (
        f"data.path={tmp_path} has no valid.txt (data.files.valid=valid.txt); set "
        "data.files.valid=<a file there> (it holds: dev.txt, test.txt, train.txt)"
    )
