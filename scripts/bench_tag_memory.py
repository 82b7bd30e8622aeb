"""tag.py's memory over a long stdin: a tagger with char-LM features, 100,000 distinct lines.

    python scripts/bench_tag_memory.py --lines 100000 --cache-mib 16

Trains (tiny, in a temporary folder) a forward and a backward char LM and a CoNLL tagger that
reads their states (``model.char_lm_features_cache_mib=--cache-mib``), then pipes ``--lines``
generated sentences, all different, through ``scripts/tag.py`` and samples the process's
resident memory (VmRSS) as its output comes back. The feature cache fills to its bound and
tag.py keeps no result after printing it, so the RSS stops growing; the last line prints the
RSS at the end over the RSS after the first tenth of the lines.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "conll_ner"
WORDS = "Peter Blackburn said New York EU rejects German call to boycott British lamb".split()


def run(*args: str, **kwargs) -> None:
    subprocess.run([sys.executable, *args], check=True, cwd=REPO, **kwargs)


def train(out: Path, *overrides: str) -> Path:
    tiny = [
        *("model.embedding_dim=16", "model.hidden_size=32", "trainer.max_epochs=1"),
        *("trainer.accelerator=cpu", "trainer.limit_train_batches=4", "logger=none"),
        *("trainer.limit_val_batches=2", "test=false", f"hydra.run.dir={out}"),
    ]
    run("scripts/train.py", *tiny, *overrides, stdout=subprocess.DEVNULL)
    return out / "checkpoints" / "last.ckpt"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sentences(count: int, seed: int = 0):
    rng = random.Random(seed)
    for index in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
        yield " ".join(words) + f" {index}\n"  # every line distinct: every one a cache miss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--cache-mib", type=float, default=16)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = root / "train.txt"
        run("-m", "seqmodels.data.conll_files", str(FIXTURE / "train.txt"), str(text), env=env)
        text.write_text(text.read_text() * 20)
        lm = ("task=char_lm", "data=text_file", f"data.path={text}", "data.block_size=32")
        fwd = train(root / "fwd", *lm, "data.eval_window=null", f"data.cache_dir={root}/t")
        bwd = train(
            root / "bwd",
            *lm,
            "data.eval_window=null",
            "data.reverse=true",
            f"data.cache_dir={root}/t",
        )
        tagger = train(
            root / "tagger",
            "data=conll",
            f"data.path={FIXTURE}",
            "data.batch_size=2",
            f"+model.char_lm_features=[{fwd},{bwd}]",
            f"model.char_lm_features_cache_mib={args.cache_mib}",
        )
        process = subprocess.Popen(
            [sys.executable, "scripts/tag.py", f"ckpt_path={tagger}", "num_threads=1"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def feed() -> None:
            for line in sentences(args.lines):
                process.stdin.write(line)
            process.stdin.close()

        threading.Thread(target=feed, daemon=True).start()
        marks = {args.lines * k // 10 for k in range(1, 11)}
        samples = {}
        for done, _ in enumerate(process.stdout, start=1):
            if done in marks:
                samples[done] = rss_mib(process.pid)
                print(f"{done:>7} lines tagged: RSS {samples[done]:7.1f} MiB", flush=True)
        process.wait()
    first, last = samples[min(samples)], samples[max(samples)]
    print(f"RSS after {max(samples)} lines / after {min(samples)}: {last / first:.3f}")


if __name__ == "__main__":
    main()
