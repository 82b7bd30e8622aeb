"""The TextSamples callback: a char-LM sample per validation in TensorBoard's Text tab."""

from __future__ import annotations

from pathlib import Path

from conftest import make_cfg, requires_data
from tb_events import scalar_tags
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugin_util import markdown_to_safe_html

from seqmodels.commands.train import train

CHAR_LM = [
    "task=char_lm",
    "model=lstm",
    "data.block_size=32",
    "trainer.max_epochs=2",
    "callbacks.text_samples.length=60",
]


def text_samples(log_dir: Path) -> list[tuple[int, str]]:
    """(step, text) of every ``samples/text`` entry in ``log_dir``'s event files."""
    found = []
    for event_file in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            if tag.startswith("samples/text"):
                for event in acc.Tensors(tag):
                    found.append((event.step, event.tensor_proto.string_val[0].decode()))
    return found


@requires_data
def test_a_sample_per_epoch_and_training_unchanged(tmp_path: Path, one_thread) -> None:
    with_samples = train(make_cfg(tmp_path / "on", *CHAR_LM, "callbacks.text_samples.prompt=KING"))
    samples = text_samples(tmp_path / "on" / "tensorboard")
    assert [step for step, _ in samples] == [4, 8]  # after each epoch's validation (4 steps each)
    for _, text in samples:
        lines = text.split("\n")
        assert all(line.startswith("    ") for line in lines)  # verbatim in Markdown:
        assert markdown_to_safe_html(text).startswith("<pre><code>")  # as the Text tab shows it
        assert "\n".join(line[4:] for line in lines).startswith("KING")
        assert len("\n".join(line[4:] for line in lines)) == len("KING") + 60

    without = train(make_cfg(tmp_path / "off", *CHAR_LM, "callbacks.text_samples=null"))
    assert text_samples(tmp_path / "off" / "tensorboard") == []
    # Sampling draws from a generator of its own: the run's randomness is untouched.
    assert with_samples == without
    on, off = (
        scalar_tags(tmp_path / "on" / "tensorboard"),
        scalar_tags(tmp_path / "off" / "tensorboard"),
    )
    assert on["train/loss"] == off["train/loss"]


@requires_data
def test_a_prompt_outside_the_vocabulary_means_no_samples(tmp_path: Path, one_thread, caplog):
    metrics = train(make_cfg(tmp_path, *CHAR_LM, "callbacks.text_samples.prompt='€'"))
    assert "no text samples: callbacks.text_samples.prompt has characters" in caplog.text
    assert "'€'" in caplog.text
    assert text_samples(tmp_path / "tensorboard") == [] and "test/bpc" in metrics


@requires_data
def test_samples_of_a_backward_byte_model_read_as_text(tmp_path: Path, one_thread) -> None:
    """A backward byte-level LM draws the bytes *before* its prompt, last first: the sample
    shown is UTF-8 text in reading order that ends with the prompt (like generate.py's)."""
    train(
        make_cfg(
            tmp_path,
            *CHAR_LM,
            "data.unit=byte",
            "data.reverse=true",
            "trainer.max_epochs=1",
            "callbacks.text_samples.prompt='KING é'",
        )
    )
    ((_, text),) = text_samples(tmp_path / "tensorboard")
    shown = "\n".join(line[4:] for line in text.split("\n"))
    assert shown.endswith("KING é")  # the prompt, turned back round and decoded from bytes
