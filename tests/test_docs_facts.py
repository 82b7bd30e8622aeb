"""What the docs state as a fact of the config is read from the config, so it cannot drift.

- docs/configuration.md's group table lists every option of each ``conf/<group>/`` folder and
  no option that is not there; the default it marks is the composed config's choice;
- a sweep's sample on a page (its report table and the paths into it) has the job folder names
  a sweep of that command writes today and epochs counted from 0;
- every default stated for a top-level key (``num_threads`` (null: ...), ``seed`` (42; ...),
  "by default (`num_threads=1`)") is the composed config's value.

Generic over the table's rows and every page, so a group or page added later is checked too.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import CONFIG_DIR, REPO
from hydra import compose, initialize_config_dir

from seqmodels.plumbing.tensorboard_view import run_name

CONF = Path(CONFIG_DIR)
CONFIGURATION = REPO / "docs" / "configuration.md"
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
ROW = re.compile(r"^\| `(\w+)` \| (.+?) \|")


@pytest.fixture(scope="module")
def composed():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", return_hydra_config=True)


def without_parentheses(text: str) -> str:
    """``a (b (c)), d`` -> ``a , d``: the options of a cell, not the notes about them."""
    while (stripped := re.sub(r"\([^()]*\)", "", text)) != text:
        text = stripped
    return text


def group_rows() -> dict[str, str]:
    """``{group: its options cell}`` for each row of the table of groups."""
    rows = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        if (found := ROW.match(line)) and (CONF / found[1]).is_dir():
            rows[found[1]] = found[2]
    return rows


def test_the_table_has_every_config_group() -> None:
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and any(p.glob("*.yaml"))}
    assert groups - {"hydra"} <= set(group_rows()), "groups missing from docs/configuration.md"


@pytest.mark.parametrize("group", sorted(group_rows()))
def test_a_group_row_lists_exactly_the_options_in_conf(group: str) -> None:
    cell = group_rows()[group]
    options = {p.stem for p in (CONF / group).glob("*.yaml")}
    named = set(re.findall(r"`(\w+)`", cell))
    assert options <= named, f"docs/configuration.md, {group}: not listed: {options - named}"
    listed = {
        token
        for item in re.split(r"[,;]", without_parentheses(cell))
        for token in re.findall(r"^\s*`(\w+)`\s*$", item)
    }
    assert listed <= options, f"docs/configuration.md, {group}: no such option: {listed - options}"


DEFAULT_MARK = re.compile(r"\(default `(\w+)`\)|`(\w+)` \(default[),;:]")


@pytest.mark.parametrize(
    "group", sorted(g for g, c in group_rows().items() if DEFAULT_MARK.search(c))
)
def test_the_default_a_row_marks_is_the_composed_choice(group: str, composed) -> None:
    marked = DEFAULT_MARK.findall(group_rows()[group])
    choice = composed.hydra.runtime.choices.get(group)
    assert [a or b for a, b in marked] == [choice], f"{group}: the config's default is {choice}"


# configuration.md's paragraph of top-level keys: "`seed` (42; ...", "`num_threads` (null: ..."
LISTED_DEFAULT = re.compile(r"`(?P<key>\w+)` \((?P<value>null|true|false|-?\d+(?:\.\d+)?)\b")
# any page: "... by default (`num_threads=1`)"
BY_DEFAULT = re.compile(r"by default \(`(?P<key>\w+)=(?P<value>[^`]+)`\)")


def stated_defaults() -> list[tuple[str, str, str]]:
    """``(page, key, value)`` for each default a page states for a top-level config key."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        keys = set(compose(config_name="train"))
    found = []
    for page in PAGES:
        text = " ".join(page.read_text(encoding="utf-8").split())  # statements across lines
        matches = list(BY_DEFAULT.finditer(text))
        if page == CONFIGURATION:
            paragraph = text.split("Top-level keys:", 1)[1].split("##", 1)[0]
            matches += LISTED_DEFAULT.finditer(paragraph)
        for match in matches:
            if match["key"] in keys:
                found.append((str(page.relative_to(REPO)), match["key"], match["value"]))
    return found


def test_some_top_level_defaults_are_stated() -> None:
    keys = {key for _, key, _ in stated_defaults()}
    assert {"seed", "num_threads"} <= keys  # the reader of the table of keys above


@pytest.mark.parametrize(("page", "key", "value"), stated_defaults())
def test_a_stated_top_level_default_is_the_configs(page: str, key: str, value: str, composed):
    assert yaml.safe_load(value) == composed[key], f"{page}: {key} defaults to {composed[key]}"


# --- sample output: a sweep's report table and folder names ------------------------------------


def sweep_samples() -> list[tuple[str, list[str], list[list[str]]]]:
    """``(page, the -m command's overrides, the report table's rows)`` for each report table
    that follows a ``train.py -m`` command on a page."""
    samples = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for command, table in re.findall(
            r"python scripts/train.py -m ((?:[^\n]*\\\n)*[^\n]*)\n(?:[^|]*?\n)(\| job \|.*?)\n\n",
            text,
            flags=re.S,
        ):
            words = shlex.split(command.replace("\\\n", " "))
            lines = [line for line in table.splitlines() if line.startswith("| ")][1:]
            rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
            samples.append((str(page.relative_to(REPO)), words, rows))
    return samples


def jobs_of(overrides: list[str]) -> list[tuple[str, list[str]]]:
    """Hydra's basic sweeper: ``(job folder name, the job's overrides)`` in job order."""
    choices = [
        [(k, v) for v in value.split(",")] for k, value in (o.split("=", 1) for o in overrides)
    ]
    jobs = []
    for number, combination in enumerate(itertools.product(*choices)):
        job = [f"{k}={v}" for k, v in combination]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=[o for o in job if "hydra." not in o])
        jobs.append((f"{number}_{run_name(cfg.data.name, cfg.model.name, job)}", job))
    return jobs


def test_the_docs_show_a_sweep_sample() -> None:
    assert sweep_samples(), "no report table after a train.py -m command: the regex is stale"


@pytest.mark.parametrize(("page", "overrides", "rows"), sweep_samples())
def test_a_sweep_samples_folders_and_epochs_are_what_a_run_writes(page, overrides, rows) -> None:
    """The job column holds the folder names a sweep writes today, epochs count from 0 (below
    trainer.max_epochs), and every path into that sweep on the page names one of its jobs."""
    jobs = dict(jobs_of(overrides))
    assert sorted(row[0] for row in rows) == sorted(jobs), f"{page}: job folders"
    epochs = int(dict(o.split("=", 1) for o in overrides).get("trainer.max_epochs", 10**6))
    for row in rows:
        best = re.search(r"\((\d+)\)", row[2])
        assert best and int(best[1]) < epochs, f"{page}: epoch {row[2]} (epochs count from 0)"
    sweep_dir = dict(o.split("=", 1) for o in overrides).get("hydra.sweep.dir")
    if sweep_dir:
        text = (REPO / page).read_text(encoding="utf-8")
        for folder in re.findall(re.escape(sweep_dir) + r"/([^/\s]+)/", text):
            assert folder in jobs, f"{page}: {sweep_dir}/{folder} is not a job folder"
