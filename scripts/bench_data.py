"""Char-LM data at any corpus size: setup time, peak memory and training speed.

For each size it generates a text (tiny Shakespeare repeated, with a line of non-ASCII text
after every copy so the UTF-8 decoder is exercised), then in a fresh process per measurement:

* **first**: ``prepare_data`` + ``setup`` with an empty token cache (vocabulary scan and
  encoding), and the encoding speed in MB/s;
* **cached**: ``setup`` again in a new process (the token file is reused), then ``--steps``
  training steps through ``Trainer.fit`` (the default LSTM, ``data.batch_size`` x
  ``data.block_size`` windows), timed after ``--warmup`` steps;
* **in RAM** (smallest size only): the same steps with every id held in memory, as before
  token files, for a side-by-side speed comparison;
* **peak RSS** of each process (``ru_maxrss``), and its increase over the smallest size's.

The generated texts and token files are deleted at the end. The last line compares training
steps per second of the largest corpus with the smallest (1.00 = unchanged).

``--non-ascii MB`` (default 64; 0 skips) also times the vocabulary scan and the encoding of
texts that are mostly not ASCII: Chinese (3,000 symbols, uint16 ids), Greek words and a mixed
Latin/Greek/Cyrillic/Chinese line, each generated and repeated to that size.

    python scripts/bench_data.py --sizes 1MB,100MB
    python scripts/bench_data.py --sizes 1MB,100MB,1GB,5GB --dir /tmp/bench_data
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
EXTRA = "Naïve café owners – «ça va» – 東京 🙂\n"


def parse_size(text: str) -> int:
    for suffix, factor in UNITS.items():
        if text.upper().endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def base_text(data_dir: Path) -> bytes:
    source = data_dir / "tinyshakespeare" / "input.txt"
    if not source.is_file():
        sys.exit(f"bench_data: {source} not found; set --data-dir (SEQMODELS_DATA_DIR)")
    return source.read_bytes() + EXTRA.encode()


def generate(path: Path, size: int, base: bytes) -> None:
    """``size`` bytes of text: ``base`` repeated, cut at a line end."""
    if path.is_file() and path.stat().st_size >= size - len(base):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        written = 0
        while written + len(base) <= size:
            f.write(base)
            written += len(base)
        rest = base[: size - written]
        f.write(rest[: rest.rfind(b"\n") + 1])
    tmp.replace(path)


def non_ascii_texts(rows: int = 200_000) -> dict[str, str]:
    """Samples of text that is mostly not ASCII, from a fixed seed."""
    import random

    rng = random.Random(0)
    greek = [chr(c) for c in range(0x3B1, 0x3CA)]
    return {
        "Chinese": "".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(rows)),
        "Greek": " ".join("".join(rng.choices(greek, k=6)) for _ in range(rows // 7)),
        "mixed": "The quick brown fox, naïve café. Ελληνικά и русский 中文.\n" * (rows // 60),
    }


def bench_non_ascii(scratch: Path, size: int) -> list[tuple[str, int, float, float]]:
    """``(name, vocabulary size, scan MB/s, encoding MB/s)`` of each non-ASCII text."""
    from seqmodels.data.token_file import encode_file, scan_vocab

    results = []
    for name, text in non_ascii_texts().items():
        path, cache = scratch / f"{name}.txt", scratch / f"tokens_{name}"
        data = text.encode()
        path.write_bytes(data * max(1, size // len(data)))
        mb = path.stat().st_size / 1e6
        started = time.perf_counter()
        vocab = scan_vocab(path, cache)
        scanned = time.perf_counter()
        encode_file(path, vocab, cache)
        encoded = time.perf_counter()
        results.append((name, len(vocab), mb / (scanned - started), mb / (encoded - scanned)))
        path.unlink()
        shutil.rmtree(cache, ignore_errors=True)
    return results


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints one JSON line."""
    import logging
    import warnings

    import lightning as L
    import torch

    from seqmodels.data import CharLMDataModule
    from seqmodels.tasks import CharLM

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = CharLMDataModule(
        path=args.text,
        cache_dir=args.cache,
        batch_size=args.batch_size,
        block_size=args.block_size,
        eval_window=None,
    )
    data.prepare_data()
    data.setup("fit")
    result = {"setup_s": time.perf_counter() - start, "rss_setup_mb": peak_rss_mb()}
    if args.mode == "memory":  # today's way before token files: every id in RAM as int64
        from seqmodels.data.token_file import TokenSpan

        data.parts = {k: TokenSpan.of(v.read(0, len(v))) for k, v in data.parts.items()}
    if args.mode in ("cached", "memory"):
        model = {"cell": "lstm", "embedding_dim": 128, "hidden_size": 256, "num_layers": 1}
        module = CharLM(
            **data.vocab_kwargs(),
            model=model,
            optimizer={"_target_": "torch.optim.AdamW", "lr": 0.003},
        )
        times: list[float] = []

        class Clock(L.Callback):
            def on_train_batch_end(self, *_args) -> None:
                times.append(time.perf_counter())

        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=args.warmup + args.steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[Clock()],
        )
        trainer.fit(module, datamodule=data)
        timed = times[args.warmup :]
        result["steps_per_s"] = (len(timed) - 1) / (timed[-1] - timed[0])
    result["rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def measure(mode: str, text: Path, cache: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--text",
        str(text),
        "--cache",
        str(cache),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch-size",
        str(args.batch_size),
        "--block-size",
        str(args.block_size),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench_data: {mode} run on {text} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1MB,100MB")
    parser.add_argument("--dir", default="/tmp/bench_data", help="scratch folder (deleted)")
    parser.add_argument("--data-dir", default=None, help="holds tinyshakespeare/input.txt")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--non-ascii", type=float, default=64, help="MB of each non-ASCII text")
    parser.add_argument("--child", choices=["first", "cached", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--text", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        return child(args)

    import os

    data_dir = Path(args.data_dir or os.environ.get("SEQMODELS_DATA_DIR", "~/.cache/seqmodels"))
    base = base_text(data_dir.expanduser())
    scratch = Path(args.dir)
    rows = []
    try:
        for label in args.sizes.split(","):
            size = parse_size(label)
            text, cache = scratch / f"text_{label}.txt", scratch / f"tokens_{label}"
            started = time.perf_counter()
            generate(text, size, base)
            generated = time.perf_counter() - started
            shutil.rmtree(cache, ignore_errors=True)
            first = measure("first", text, cache, args)
            cached = measure("cached", text, cache, args)
            memory = measure("memory", text, cache, args) if not rows else None
            mb = text.stat().st_size / 1e6
            rows.append(
                {
                    "size": label,
                    "mb": mb,
                    "generate_s": generated,
                    "first_s": first["setup_s"],
                    "encode_mb_s": mb / first["setup_s"],
                    "cached_s": cached["setup_s"],
                    "rss_first_mb": first["rss_mb"],
                    "rss_cached_mb": cached["rss_mb"],
                    "steps_per_s": cached["steps_per_s"],
                }
            )
            if memory is not None:
                rows[-1]["in_memory_steps_per_s"] = memory["steps_per_s"]
            print(json.dumps(rows[-1]), flush=True)
            text.unlink(missing_ok=True)  # keep the disk free for the next size
            shutil.rmtree(cache, ignore_errors=True)
        non_ascii = bench_non_ascii(scratch, int(args.non_ascii * 1e6)) if args.non_ascii else []
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    base_rss = max(rows[0]["rss_first_mb"], rows[0]["rss_cached_mb"])
    print()
    print(
        "| corpus | first setup (s) | encoding (MB/s) | cached setup (s) | peak RSS first / "
        "cached (MB) | over smallest (MB) | train steps/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        over = max(row["rss_first_mb"], row["rss_cached_mb"]) - base_rss
        print(
            f"| {row['size']} | {row['first_s']:.2f} | {row['encode_mb_s']:.0f} | "
            f"{row['cached_s']:.2f} | {row['rss_first_mb']:.0f} / {row['rss_cached_mb']:.0f} | "
            f"{over:+.0f} | {row['steps_per_s']:.2f} |"
        )
    small = rows[0]
    print(
        f"\ntrain steps/s at {small['size']}: from the token file {small['steps_per_s']:.2f}, "
        f"all ids in RAM {small['in_memory_steps_per_s']:.2f}"
    )
    ratio = rows[-1]["steps_per_s"] / rows[0]["steps_per_s"]
    print(f"train steps/s, {rows[-1]['size']} / {rows[0]['size']}: {ratio:.2f}")
    if non_ascii:
        print(f"\n| text ({args.non_ascii:g} MB) | vocabulary | scan (MB/s) | encoding (MB/s) |")
        print("|---|---|---|---|")
        for name, vocab_size, scan, encode in non_ascii:
            print(f"| {name} | {vocab_size} | {scan:.0f} | {encode:.0f} |")


if __name__ == "__main__":
    main()
