"""The README and the user guide under docs/ stay true to the code.

- every relative link and ``#anchor`` resolves (GitHub's heading slugs);
- every ``python scripts/<name>.py ...`` (or ``seqmodels-<name> ...``, ``make train ARGS=...``)
  command line in them composes with Hydra's compose API against its entry config, without
  training, so a renamed option or config group fails here instead of reaching a reader;
  argparse scripts get their ``--options`` checked against the script;
- the TensorBoard tags docs/tensorboard.md lists are the tags short real runs write;
- the numbers of the README's results table are the numbers of the page each row links to.

The tests are generic over every page, so pages added later are checked too.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, REPO, make_cfg, requires_data
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqmodels.commands.train import train

PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# --- Markdown reading --------------------------------------------------------------------------


def split_page(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, list[str]]]]:
    """(prose lines with their numbers, fenced code blocks with their first line's number)."""
    prose: list[tuple[int, str]] = []
    blocks: list[tuple[int, list[str]]] = []
    block: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            if block is None:
                block = []
                blocks.append((number + 1, block))
            else:
                block = None
        elif block is not None:
            block.append(line)
        else:
            prose.append((number, line))
    return prose, blocks


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed,
    spaces to hyphens (github-slugger's rules)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = split_page(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose:
        found.update(HTML_ANCHOR.findall(line))
        if match := re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line):
            slug = github_slug(match.group(2))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found


def links(page: Path) -> Iterator[tuple[int, str]]:
    """Relative link targets outside code (web addresses are not followed)."""
    prose, _ = split_page(page.read_text(encoding="utf-8"))
    for number, line in prose:
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                yield number, target


def link_cases() -> list[tuple[Path, int, str]]:
    return [(page, number, target) for page in PAGES for number, target in links(page)]


@pytest.mark.parametrize(
    ("page", "line", "target"),
    link_cases(),
    ids=[f"{rel(p)}:{n}:{t}" for p, n, t in link_cases()],
)
def test_relative_links_and_anchors_resolve(page: Path, line: int, target: str) -> None:
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    where = f"{rel(page)}:{line}: link {target!r}"
    assert destination.exists(), f"{where}: {destination} does not exist"
    assert destination.is_relative_to(REPO), f"{where}: points outside the repository"
    if anchor:
        assert destination.suffix == ".md", f"{where}: an anchor into a non-Markdown file"
        known = anchors(destination)
        assert anchor in known, f"{where}: no heading gives #{anchor} (has: {sorted(known)})"


def test_github_slugs() -> None:
    assert github_slug("Why LSTMs") == "why-lstms"
    assert github_slug("Tag sentences (slot filling)") == "tag-sentences-slot-filling"
    assert github_slug("`model=` and `task=`: the groups") == "model-and-task-the-groups"
    assert github_slug("Mixed precision, DDP & SLURM") == "mixed-precision-ddp--slurm"


# --- Command lines -------------------------------------------------------------------------------

SCRIPT = re.compile(r"(?:^|/)scripts/(\w+)\.py$")
CONSOLE = re.compile(r"^seqmodels-(\w+)$")
STOP = {"|", "||", "&&", ";", "<", ">", ">>", "2>", "&", "2>&1"}
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i"}
TAKES_OVERRIDES = re.compile(r"add_argument\(\s*\"overrides\"")  # a benchmark's train overrides
ERROR_EXAMPLE = re.compile(r"#\s*error:")  # `python scripts/train.py model=x  # error: ...`
PLACEHOLDER = re.compile(r"<[^\s<>]([^<>]*[^\s<>])?>")  # <run>, <run folder>; not "< file"


@dataclass
class Command:
    page: Path
    line: int
    text: str  # as written (continuations joined)

    @property
    def where(self) -> str:
        return f"{rel(self.page)}:{self.line}: {self.text}"


def shell_variables(blocks: list[tuple[int, list[str]]]) -> dict[str, str]:
    """``NAME=value`` lines of a page's code blocks (e.g. ``C="trainer.max_epochs=1 ..."``)."""
    variables: dict[str, str] = {}
    for _, lines in blocks:
        for line in lines:
            if match := re.match(r"^\s*([A-Z_][A-Z0-9_]*)=(\S.*)$", line.strip("`")):
                try:
                    (value,) = shlex.split(match.group(2), comments=True)
                except ValueError:
                    continue
                variables[match.group(1)] = value
    return variables


def joined(lines: list[str], start: int) -> Iterator[tuple[int, str]]:
    """Lines with ``\\`` continuations joined, each with its first line's number."""
    buffer, first = "", start
    for offset, line in enumerate(lines):
        if not buffer:
            first = start + offset
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        yield first, buffer + line
        buffer = ""
    if buffer:
        yield first, buffer


def commands(page: Path) -> Iterator[Command]:
    """Every line of a page (code blocks and inline code) that runs one of the scripts."""
    prose, blocks = split_page(page.read_text(encoding="utf-8"))
    candidates: list[tuple[int, str]] = []
    for start, lines in blocks:
        candidates += joined(lines, start)
    for number, line in prose:
        for _, code in INLINE_CODE.findall(line):
            candidates.append((number, code.replace("\\|", "|")))
    for number, text in candidates:
        if re.search(r"scripts/\w+\.py|seqmodels-\w+|make train ARGS=", text):
            yield Command(page, number, text.strip())


def tokens(command: Command, variables: dict[str, str]) -> list[str]:
    text = re.sub(r"^\$\s+", "", command.text)  # a prompt before a command and its output
    text = PLACEHOLDER.sub("X", text)
    text = re.sub(  # $C from the page's C="..."; any other variable ($HOME, $s) a placeholder
        r"\$\{?([A-Za-z_]\w*)\}?",
        lambda m: variables.get(m.group(1), "X"),
        text,
    )
    return shlex.split(text, comments=True)


@functools.cache
def console_scripts() -> dict[str, str]:
    """``seqmodels-<name>`` -> the module its ``main`` lives in (the installed entry points)."""
    return {
        ep.name: ep.value.split(":")[0]
        for ep in entry_points(group="console_scripts")
        if ep.name.startswith("seqmodels-")
    }


def script_source(name: str) -> tuple[str, str | None]:
    """(the source that defines the command line of ``scripts/<name>.py``, its Hydra entry
    config name or None for an argparse script)."""
    source = (REPO / "scripts" / f"{name}.py").read_text(encoding="utf-8")
    if match := re.search(r"from (seqmodels[\w.]*) import main", source):
        module = REPO / Path(*match.group(1).split(".")).with_suffix(".py")
        source += module.read_text(encoding="utf-8")
    if (Path(CONFIG_DIR) / f"{name}.yaml").is_file():  # scripts/train.py -> conf/train.yaml
        return source, name
    config = re.search(r"@hydra\.main\([^)]*config_name=\"(\w+)\"", source)
    return source, config.group(1) if config else None


@dataclass
class Invocation:
    script: str  # scripts/<script>.py
    args: list[str]


def invocation(command: Command, variables: dict[str, str]) -> Invocation | None:
    words = tokens(command, variables)
    for i, word in enumerate(words):
        if match := SCRIPT.search(word):
            script, rest = match.group(1), words[i + 1 :]
            break
        if (match := CONSOLE.match(word)) and word in console_scripts():
            module = console_scripts()[word]
            script = {"seqmodels.commands.evaluate": "eval"}.get(module, module.split(".")[-1])
            rest = words[i + 1 :]
            break
        if word == "make" and words[i + 1 : i + 2] == ["train"]:
            script = "train"
            rest = [a for w in words[i + 2 :] if w.startswith("ARGS=") for a in w[5:].split()]
            break
    else:
        return None
    args: list[str] = []
    for word in rest:
        if word in STOP:
            break
        args.append(word)
    return Invocation(script, args)


def hydra_overrides(args: list[str], where: str) -> list[str]:
    """The overrides of a Hydra command line: flags dropped, placeholders made concrete."""
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif arg in ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"):
            raise AssertionError(f"{where}: {arg} is not checked by this test")
        elif arg.startswith("-") or arg == "..." or re.fullmatch(r"\[\w+\]", arg):
            continue  # -m, --multirun, ...
        else:
            overrides.append(PLACEHOLDER.sub("X", arg))
    return overrides


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def sweep_values(override: Override) -> list[str]:
    """Each value a sweep override (``a,b``, ``choice()``, ``range()``, ``glob()``,
    ``interval()``) takes, as override text."""
    if isinstance(override.value(), Glob):
        return override.value().filter(group_options(override.key_or_group))
    if isinstance(override.value(), IntervalSweep):
        return [str(override.value().start)]
    return list(override.sweep_string_iterator())


def compositions(overrides: list[str]) -> list[list[str]]:
    """One override list per value of every swept config group (the others at their first
    value), so each option file composes once without multiplying out a whole grid; other
    swept keys (``seed=42,1,2``) compose at their first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for text, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            key = override.get_key_element()
            values = [f"{key}={value}" for value in sweep_values(override)]
            is_group = (Path(CONFIG_DIR) / override.key_or_group).is_dir()
            choices.append(values if is_group else values[:1])
        else:
            choices.append([text])
    lists = [[c[0] for c in choices]]
    for i, values in enumerate(choices):
        for value in values[1:]:
            lists.append([*lists[0][:i], value, *lists[0][i + 1 :]])
    return lists


def command_cases() -> list[tuple[Command, dict[str, str]]]:
    cases = []
    for page in PAGES:
        prose, blocks = split_page(page.read_text(encoding="utf-8"))
        inline = [code for _, line in prose for _, code in INLINE_CODE.findall(line)]
        variables = shell_variables([*blocks, (0, inline)])
        cases += [(command, variables) for command in commands(page)]
    return cases


@pytest.fixture(scope="module")
def hydra_configs() -> Iterator[None]:
    """One Hydra initialisation for every compose of the module (0.35 s each otherwise)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield


COMPOSED: set[tuple[str, tuple[str, ...]]] = set()


def check_composes(config_name: str, overrides: list[str]) -> None:
    """Hydra's compose (0.3 s each): once per distinct command line across the pages."""
    key = (config_name, tuple(overrides))
    if key not in COMPOSED:
        hydra = any(o.lstrip("+~").startswith("hydra") for o in overrides)
        compose(config_name, overrides=overrides, return_hydra_config=hydra)
        COMPOSED.add(key)


@pytest.mark.parametrize(
    ("command", "variables"), command_cases(), ids=lambda c: getattr(c, "where", "")
)
def test_documented_commands_compose(
    command: Command, variables: dict[str, str], hydra_configs
) -> None:
    call = invocation(command, variables)
    if call is None:
        pytest.skip("mentions a script without running it")
    assert (REPO / "scripts" / f"{call.script}.py").is_file(), f"{command.where}: no such script"
    source, config_name = script_source(call.script)
    if config_name is None:  # argparse: each --option must be one the script defines
        for arg in call.args:
            option = arg.split("=")[0]
            if option.startswith("--"):
                assert f'"{option}"' in source, f"{command.where}: {option} is not an option"
        if TAKES_OVERRIDES.search(source):
            overrides = [a for a in call.args if "=" in a and not a.startswith("-")]
            for overrides_ in compositions(hydra_overrides(overrides, command.where)):
                check_composes("train", overrides_)
        return
    if ERROR_EXAMPLE.search(command.text):  # a page showing an error: it must still fail
        with pytest.raises(Exception, match=r"."):
            for overrides in compositions(hydra_overrides(call.args, command.where)):
                compose(config_name, overrides=overrides)
        return
    try:
        for overrides in compositions(hydra_overrides(call.args, command.where)):
            check_composes(config_name, overrides)
    except Exception as err:  # Hydra's message, with the doc line it came from
        raise AssertionError(f"{command.where}\n{type(err).__name__}: {err}") from None


def test_commands_are_found_and_a_renamed_option_fails(hydra_configs) -> None:
    """The extraction sees continuation lines, prompts, env prefixes and sweeps; and a wrong
    option does not compose (so the test above can fail)."""
    page = REPO / "README.md"
    text = (
        "HYDRA_FULL_ERROR=1 python scripts/train.py -m model=rnn,gru \\\n"
        "    'trainer.max_epochs=2'   # a comment"
    )
    (line,) = list(joined(text.splitlines(), 1))
    call = invocation(Command(page, 1, line[1]), {})
    assert call is not None and call.script == "train"
    overrides = hydra_overrides(call.args, "")
    assert [o[0] for o in compositions(overrides)] == ["model=rnn", "model=gru"]
    assert compositions(["seed=1,2", "data=atis,snips"]) == [
        ["seed=1", "data=atis"],
        ["seed=1", "data=snips"],
    ]
    console = invocation(Command(page, 1, "seqmodels-eval ckpt_path=<run> | head"), {})
    assert console is not None and (console.script, console.args) == ("eval", ["ckpt_path=X"])
    make = invocation(Command(page, 1, 'make train ARGS="task=char_lm model=gru"'), {})
    assert make is not None and make.args == ["task=char_lm", "model=gru"]
    variables = {"C": "trainer.max_epochs=1 seed=3"}
    shell = invocation(
        Command(page, 1, "$ python scripts/train.py $C data.path=$HOME/x"), variables
    )
    assert shell is not None and shell.args == ["trainer.max_epochs=1", "seed=3", "data.path=X/x"]
    assert hydra_overrides(["ckpt_path=<run>/checkpoints/last.ckpt"], "") == [
        "ckpt_path=X/checkpoints/last.ckpt"
    ]
    with pytest.raises(Exception, match="model/lstmm"):
        compose("train", overrides=["model=lstmm"])
    with pytest.raises(Exception, match="hiden_size"):
        compose("train", overrides=["model.hiden_size=3"])
    assert len(command_cases()) > 50  # the guide is full of commands; the finder sees them


# --- TensorBoard tags ----------------------------------------------------------------------------

TB_PAGE = REPO / "docs" / "tensorboard.md"
INTERNAL = re.compile(r"^(_hparams_/|custom_scalars__config__$)")


def documented_tags() -> list[str]:
    """Tags in the first column of the tables of docs/tensorboard.md's tag section."""
    section = TB_PAGE.read_text(encoding="utf-8").split("\n## Every tag", 1)[1].split("\n## ")[0]
    tags = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            tags += [t for t in re.findall(r"`([^`]+)`", first) if t != "tag"]
    return tags


def tag_pattern(tag: str) -> re.Pattern[str]:
    """``grad_norm/<parameter name>`` matches ``grad_norm/embedding.weight``."""
    parts = re.split(r"(<[^>]+>)", tag)
    return re.compile("".join(".+" if p.startswith("<") else re.escape(p) for p in parts) + "$")


def written_tags(run: Path) -> set[str]:
    """Every tag in a run's event files (scalars, text, images, histograms), with TensorBoard's
    own reader."""
    tags: set[str] = set()
    for event_file in run.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(
            str(event_file), size_guidance={k: 1 for k in ("scalars", "tensors")}
        )
        acc.Reload()
        for kind in ("scalars", "tensors", "images", "histograms"):
            tags.update(t for t in acc.Tags()[kind] if not INTERNAL.match(t))
    return tags


@pytest.fixture(scope="module")
def tags_written(tmp_path_factory: pytest.TempPathFactory, one_thread_per_module) -> set[str]:
    """Short runs of each task (LSTM and GRU gates, text samples, both long-range tasks)."""
    short = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    long_range = ["task=long_range", "data.steps_per_epoch=2", "data.eval_batches=1"]
    GlobalHydra.instance().clear()  # make_cfg initialises Hydra itself (hydra_configs restores)
    tags: set[str] = set()
    for name, overrides in {
        "slot": ["model=bilstm"],
        "char_lm": ["task=char_lm", "model=gru"],
        "adding": [*long_range, "model=rnn"],
        "copy": [*long_range, "data=copy", "model=lstm"],
    }.items():
        out = tmp_path_factory.mktemp(name)
        train(make_cfg(out, *short, *overrides))
        tags |= written_tags(out)
    return tags


@requires_data
def test_tensorboard_page_lists_the_tags_runs_write(tags_written: set[str]) -> None:
    documented = documented_tags()
    assert len(documented) > 20, documented
    patterns = {tag: tag_pattern(tag) for tag in documented}
    never_written = [t for t, p in patterns.items() if not any(p.match(w) for w in tags_written)]
    assert not never_written, f"{rel(TB_PAGE)} lists tags no run writes: {never_written}"
    undocumented = sorted(w for w in tags_written if not any(p.match(w) for p in patterns.values()))
    families: dict[str, list[str]] = {}  # test/f1_per_type/<type>: one line, not one per type
    for tag in undocumented:
        families.setdefault(tag.rsplit("/", 1)[0] + "/", []).append(tag)
    summary = [f"{v[0]}" if len(v) == 1 else f"{k}... ({len(v)} tags)" for k, v in families.items()]
    assert not undocumented, f"runs write tags {rel(TB_PAGE)} does not list: {summary}"


def test_text_sample_tag_is_the_one_tensorboard_shows() -> None:
    """add_text("samples/text") reaches TensorBoard as samples/text/text_summary."""
    assert "samples/text/text_summary" in documented_tags()


# --- Numbers -------------------------------------------------------------------------------------

NUMBER = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")  # 95.11, 1.30x, 99.94%


def results_rows() -> list[tuple[str, Path]]:
    """Rows of the README's results table, with the page each links to."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Results", 1)[1].split("\n## ")[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            targets = [t for t in LINK.findall(line) if not t.startswith(("http", "#"))]
            if targets:
                rows.append((line, REPO / targets[0].split("#")[0]))
    return rows


def test_readme_results_are_the_numbers_of_their_pages() -> None:
    rows = results_rows()
    assert len(rows) >= 4, "the README's results table links each row to its page"
    for line, page in rows:
        text = page.read_text(encoding="utf-8")
        numbers = NUMBER.findall(INLINE_CODE.sub("", LINK.sub("", line)))
        missing = [n for n in numbers if n not in text]
        assert not missing, f"README results row states {missing}, not found in {rel(page)}: {line}"
