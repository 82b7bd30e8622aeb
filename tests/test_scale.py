"""Scale-out: sweeps and launchers, experiments, DDP, mixed precision, exact resume."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import random
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import DATA_DIR, TINY, make_cfg, requires_data, run_train_cli
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy
from tb_events import scalar_tags

from seqmodels.commands.evaluate import evaluate
from seqmodels.commands.report import report
from seqmodels.commands.train import CONFIG_DIR, train, warn_if_resuming_elsewhere
from seqmodels.core.errors import CheckpointError

SWEEP_PLUGINS = ("optuna_sweeper", "joblib_launcher", "submitit_launcher")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # no hydra_plugins namespace at all
        return False


requires_sweeps = pytest.mark.skipif(
    not all(_installed(f"hydra_plugins.hydra_{name}") for name in SWEEP_PLUGINS),
    reason="the sweeps extra is not installed (pip install -e '.[sweeps]')",
)

# The CLI runs below use TINY without the hidden size, which some of them sweep.
TINY_CLI = [o for o in TINY if not o.startswith("model.hidden_size")]


def job_dirs(sweep: Path) -> list[Path]:
    """Job folders, <job number>_<data>-<model>_<overrides>, in job order."""
    jobs = [p for p in sweep.iterdir() if p.is_dir() and p.name.split("_")[0].isdigit()]
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def assert_complete_job(job: Path) -> None:
    """A job folder with its own config, TensorBoard run and checkpoints."""
    assert (job / ".hydra" / "config.yaml").is_file(), job
    assert "test/f1" in scalar_tags(job / "tensorboard") or "test/bpc" in scalar_tags(
        job / "tensorboard"
    )
    assert (job / "checkpoints" / "last.ckpt").is_file(), job


# --- experiments ----------------------------------------------------------------------------

EXPERIMENTS = {
    "atis_bilstm": ("slot_filling", "atis", "bilstm"),
    "snips_bilstm": ("slot_filling", "snips", "bilstm"),
    "atis_best": ("slot_filling", "atis", "bilstm"),
    "snips_best": ("slot_filling", "snips", "bilstm"),
    "shakespeare_lstm": ("char_lm", "tinyshakespeare", "lstm"),
    "shakespeare_best": ("char_lm", "tinyshakespeare", "lstm"),
    "long_range_sweep": ("long_range", "adding", "lstm"),
    "long_range_copy": ("long_range", "copy", "lstm"),
    "ner": ("slot_filling", "wnut17", "bilstm"),
}


def test_every_experiment_is_listed_here() -> None:
    found = {p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")}
    assert found == set(EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_composes_a_complete_setup(name: str, tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, f"experiment={name}", tiny=False)
    task, data, model = EXPERIMENTS[name]
    assert (cfg.task.name, cfg.data.name, cfg.model.name) == (task, data, model)
    main_metric = {"slot_filling": "val/f1", "char_lm": "val/bpc", "long_range": "val/loss"}
    assert cfg.optimized_metric == main_metric[task]


@requires_data
def test_experiment_trains(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, "experiment=shakespeare_lstm", "data.block_size=32")
    metrics = train(cfg)
    assert cfg.model.num_layers == 2 and math.isfinite(metrics["test/bpc"])


# --- sweeps and launchers (one subprocess multirun each) --------------------------------------


@requires_data
def test_failing_job_is_reported_with_its_overrides(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_train_cli(
        "-m", "model.hidden_size=16,0", *TINY_CLI, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "Error executing job with overrides: ['model.hidden_size=0'" in result.stderr
    assert "model.hidden_size must be a positive integer" in result.stderr
    good, bad = job_dirs(sweep)
    assert_complete_job(good)  # the other job still ran to the end, in its own folder
    assert not (bad / "checkpoints").exists()


@requires_data
@requires_sweeps
def test_optuna_sweep_runs_trials_and_reports_the_best(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_train_cli(
        "hparams_search=atis_optuna",
        "hydra.sweeper.n_trials=2",
        "model.hidden_size=choice(8, 16)",  # the command line narrows the search space
        *TINY_CLI,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "setup plugin" not in result.stdout + result.stderr  # alembic's 7 [HYDRA] lines
    jobs = job_dirs(sweep)
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    for job in jobs:
        assert_complete_job(job)
        # sampled floats in the folder name: 4 significant digits, not Optuna's 15
        numbers = re.findall(r"\d+\.\d+", job.name)
        assert numbers and all(len(re.sub(r"^[0.]+", "", n).replace(".", "")) <= 4 for n in numbers)
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        assert "task.module.optimizer.lr=" in overrides and "model.dropout=" in overrides
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in results and "model.hidden_size" in results
    best = float(results.split("best_value:")[1].split()[0])
    assert 0.0 <= best <= 100.0
    # scripts/report.py reads an Optuna search as it reads a sweep: a row per trial.
    text = report(sweep).read_text()
    assert f"Optuna: best value {best}" in text
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + 2
    assert "| task.module.optimizer.lr |" in text  # sampled per trial: differs


def _sweep_two_models(tmp_path: Path, *launcher: str) -> tuple[Path, list[Path]]:
    """``-m model=rnn,gru`` on tiny data with the given launcher overrides; both jobs complete."""
    sweep = tmp_path / "sweep"
    result = run_train_cli(
        "-m", *launcher, "model=rnn,gru", *TINY_CLI, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(sweep)
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    for job in jobs:
        assert_complete_job(job)
    return sweep, jobs


@requires_data
@pytest.mark.slow  # two jobs of two processes each
def test_a_local_sweep_of_ddp_jobs_runs_each_job_in_its_processes(tmp_path: Path) -> None:
    """docs/scaling-out.md: -m with trainer=ddp on the basic launcher runs the jobs one after
    another, each with its own DDP processes and one folder per job."""
    _, jobs = _sweep_two_models(
        tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"
    )
    for job in jobs:  # one process (rank 0) wrote the job's events; nothing per rank beside it
        events = (job / "tensorboard").glob("events.out.tfevents.*")
        assert len({f.name.split(".")[-2] for f in events}) == 1
    assert len(list(jobs[0].parent.iterdir())) == len(jobs) + 1  # + multirun.yaml


@requires_data
@requires_sweeps
def test_joblib_launcher_runs_jobs_in_parallel(tmp_path: Path) -> None:
    _, jobs = _sweep_two_models(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    # Not a timing check (flaky on a busy machine): the jobs ran in two different worker
    # processes, which the basic launcher never does. TensorBoard names each event file
    # events.out.tfevents.<time>.<host>.<pid>.<n>.
    pids = [
        {f.name.split(".")[-2] for f in (j / "tensorboard").glob("events.out.tfevents.*")}
        for j in jobs
    ]
    assert all(len(p) == 1 for p in pids) and pids[0] != pids[1], pids


@requires_data
@requires_sweeps
def test_submitit_local_launcher_runs_the_slurm_code_path(tmp_path: Path) -> None:
    sweep, _ = _sweep_two_models(
        tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"
    )
    assert any((sweep / ".submitit").rglob("*_result.pkl")), "submitit wrote no job results"


# --- DDP --------------------------------------------------------------------------------------


def test_ddp_trainer_config(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, DDPStrategy)
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (4, 2)


@requires_data
def test_ddp_on_cpu_one_run_dir_and_metrics_over_the_whole_val_set(tmp_path: Path) -> None:
    result = run_train_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY_CLI,
        "model.hidden_size=16",
        "trainer.limit_val_batches=1.0",  # the whole val split: 500 utterances, 250 per process
        "data.eval_batch_size=64",
        cwd=tmp_path,  # the default run folder: outputs/<task>/runs/<time>_<pid>
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Exactly one output folder (the child process reused the parent's) and one TensorBoard run.
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"]
    (run_dir,) = (tmp_path / "outputs" / "slot_filling" / "runs").iterdir()
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran in it
    # one TensorBoard run for the curves (+ its HPARAMS row in hparams/), written by rank 0
    assert [p.name for p in (run_dir / "tensorboard").iterdir() if p.is_dir()] == ["hparams"]
    logged = scalar_tags(run_dir / "tensorboard")
    assert len(logged["train/loss"]) == 4  # steps of one process, logged once
    assert len(logged["grad_flow/k=1"]) == 1  # step 0, measured on rank 0 only
    assert len(logged["gates/l0_reverse/forget_mean"]) == 1  # one validation
    ddp_f1, ddp_loss = logged["val/f1"][0], logged["val/loss"][0]

    # One process evaluating the same weights on the whole val split gets the same numbers:
    # the span counts of the two processes were summed, not averaged or padded.
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="eval",
            overrides=[
                f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                "split=val",
                f"paths.output_dir={tmp_path / 'eval'}",
                f"data.data_dir={DATA_DIR}",
                "trainer.accelerator=cpu",
                "+trainer.enable_progress_bar=false",
            ],
        )
    single = evaluate(cfg)
    assert single["val/f1"] == pytest.approx(ddp_f1, abs=1e-4)
    assert single["val/sent_acc"] == pytest.approx(logged["val/sent_acc"][0], abs=1e-4)
    assert single["val/loss"] == pytest.approx(ddp_loss, rel=1e-4)  # float32 sums, other order


# --- mixed precision --------------------------------------------------------------------------


class HeadDtypeProbe(L.Callback):
    """Records the dtype of the slot tagger's tag-head outputs (instantiated from config)."""

    seen: set[torch.dtype] = set()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.tag_head.register_forward_hook(
            lambda module, args, out: HeadDtypeProbe.seen.add(out.dtype)
        )


@requires_data
def test_bf16_mixed_trains_on_cpu(cfg_factory) -> None:
    HeadDtypeProbe.seen = set()
    metrics = train(
        cfg_factory(
            "trainer.precision=bf16-mixed", f"+callbacks.probe._target_={__name__}.HeadDtypeProbe"
        )
    )
    assert torch.bfloat16 in HeadDtypeProbe.seen  # the forward pass ran under bf16 autocast
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["test/f1"])


@requires_data
@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision on GPU needs a GPU")
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_on_gpu(cfg_factory, precision: str) -> None:
    metrics = train(
        cfg_factory(f"trainer.precision={precision}", "trainer.accelerator=gpu", "model=lstm")
    )
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["test/f1"])


# --- exact resume -----------------------------------------------------------------------------


@requires_data
def test_resume_continues_exactly_in_the_same_run(tmp_path: Path) -> None:
    common = ["model=gru", "seed=3", "trainer.deterministic=true", "data.batch_size=16"]
    whole = train(make_cfg(tmp_path / "whole", *common, "trainer.max_epochs=4"))
    train(make_cfg(tmp_path / "split", *common, "trainer.max_epochs=2"))
    resumed = train(make_cfg(tmp_path / "split", *common, "trainer.max_epochs=4", "ckpt_path=last"))
    assert resumed == whole
    # The resumed run wrote into the same TensorBoard folder, continuing its steps.
    losses = scalar_tags(tmp_path / "split" / "tensorboard")["train/loss"]
    assert losses == scalar_tags(tmp_path / "whole" / "tensorboard")["train/loss"]
    assert len(losses) == 16


def files_and_digests(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


@requires_data
def test_resuming_another_models_checkpoint_names_the_options_and_touches_nothing(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    train(make_cfg(run, "model=gru"))
    last = run / "checkpoints" / "last.ckpt"
    before = files_and_digests(run)
    resumed = make_cfg(run, "model=gru", "model.hidden_size=24", f"ckpt_path={last}")
    with pytest.raises(CheckpointError, match=r"model\.hidden_size=16 \(this run: 24\)") as err:
        train(resumed)
    assert f"cannot resume from {last}" in str(err.value)
    assert files_and_digests(run) == before


@requires_data
def test_resuming_from_a_damaged_checkpoint_is_a_short_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(make_cfg(run))
    before = files_and_digests(run)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(random.Random(20).randbytes(4096))  # torch's unpickler raises KeyError on it
    result = run_train_cli(*TINY, f"ckpt_path={bad}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"{bad} is not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    after = files_and_digests(run)  # Hydra adds .hydra/ and the log; nothing earlier changes
    assert {k: after.get(k) for k in before if k != "train.log"} == {
        k: v for k, v in before.items() if k != "train.log"
    }


def test_resuming_into_a_new_folder_says_how_to_continue_the_old(tmp_path: Path, caplog) -> None:
    old = tmp_path / "old"
    cfg = make_cfg(tmp_path / "new", f"ckpt_path={old / 'checkpoints' / 'last.ckpt'}")
    warn_if_resuming_elsewhere(cfg)
    assert f"hydra.run.dir={old}" in caplog.text
    caplog.clear()
    warn_if_resuming_elsewhere(make_cfg(old, f"ckpt_path={old / 'checkpoints' / 'last.ckpt'}"))
    assert caplog.text == ""
    warn_if_resuming_elsewhere(make_cfg(old, f"ckpt_path={tmp_path / 'model.ckpt'}"))
    assert caplog.text == ""  # a file outside any run's checkpoints/ folder: no run to point to
