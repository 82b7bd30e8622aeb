"""The small Transformer encoder: causal band, sliding-context state, padding, gradcheck."""

from __future__ import annotations

import pytest
import torch

from seqmodels.layers.transformer import TransformerEncoder, rotate

TOL = 1e-10
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def encoder(**kwargs) -> TransformerEncoder:
    torch.manual_seed(0)
    options = {"num_layers": 2, "num_heads": 2, "window": 6, **kwargs}
    return TransformerEncoder(5, 8, **options).double().eval()


def test_causal_band_sees_exactly_the_window() -> None:
    enc = encoder(num_layers=1)
    x = torch.randn(2, 20, 5, dtype=torch.double)
    out = enc(x)
    later = x.clone()
    later[:, 12:] += 1.0  # the future changes nothing before step 12
    torch.testing.assert_close(enc(later)[:, :12], out[:, :12], rtol=0, atol=TOL)
    earlier = x.clone()
    earlier[:, 3] += 1.0  # step 3 is out of reach from step 9 on (window 6: steps 4..9)
    changed = (enc(earlier) - out).abs().amax(dim=(0, 2))
    assert (changed[3:9] > 1e-6).all() and (changed[9:] == 0).all()


def test_one_layer_streaming_equals_the_whole_banded_sequence() -> None:
    enc = encoder(num_layers=1)
    x = torch.randn(2, 23, 5, dtype=torch.double)
    whole = enc(x)
    for chunk in (1, 4, 23):
        state, pieces = None, []
        for part in x.split(chunk, dim=1):
            out, state = enc.run(part, state)
            pieces.append(out)
        torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=0, atol=TOL)
        assert state.shape == (2, 5, 5)  # the last window - 1 inputs
        torch.testing.assert_close(state, x[:, -5:], rtol=0, atol=0)


def test_deeper_streaming_matches_within_the_first_window() -> None:
    """Deeper, a context step is recomputed from the kept inputs alone (the sliding-context
    protocol): the same as the whole sequence while nothing has slid out yet."""
    enc = encoder(num_layers=3)
    x = torch.randn(2, 12, 5, dtype=torch.double)
    whole = enc(x)
    state, pieces = None, []
    for t in range(12):
        out, state = enc.run(x[:, t : t + 1], state)
        pieces.append(out)
    streamed = torch.cat(pieces, dim=1)
    torch.testing.assert_close(streamed[:, :6], whole[:, :6], rtol=0, atol=TOL)
    assert (streamed[:, 6:] - whole[:, 6:]).abs().max() > 1e-8  # and it is a different protocol


def test_window_null_attends_to_every_earlier_step_of_a_sequence() -> None:
    enc = encoder(window=None)
    x = torch.randn(1, 9, 5, dtype=torch.double)
    whole = enc(x)
    for t in (0, 3, 8):  # step t reads steps 0..t, however far back
        torch.testing.assert_close(enc(x[:, : t + 1])[:, -1], whole[:, t], rtol=0, atol=TOL)


def test_bidirectional_padding_is_masked() -> None:
    enc = encoder(bidirectional=True, window=None)
    x = torch.randn(3, 10, 5, dtype=torch.double)
    lengths = torch.tensor([10, 6, 2])
    batch = enc(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(batch[b : b + 1, :n], enc(x[b : b + 1, :n]), rtol=0, atol=TOL)
    assert batch[1, 6:].abs().max() == 0
    garbage = x.clone()
    garbage[2, 2:] = 1e3
    torch.testing.assert_close(enc(garbage, lengths), batch, rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="bidirectional"):
        enc.run(x)


def test_gradcheck() -> None:
    enc = encoder()
    x = torch.randn(2, 7, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: enc(inp), (x,), fast_mode=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_heads": 3}, "multiple of 2 \\* model.num_heads"),
        ({"window": 0}, "model.window"),
        ({"num_layers": 0}, "model.num_layers"),
    ],
)
def test_bad_options_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformerEncoder(5, 8, **options)


def test_rotary_scores_depend_on_the_offset_alone_under_bf16_autocast() -> None:
    """The q.k score of two fixed vectors at a fixed offset is the same at every position
    0..1,000 under bf16 autocast (to bf16 rounding of the product), as in float32."""
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)
    offset, scores = 3, []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for p in range(0, 1001, 50):
            qs, ks = q.to(torch.bfloat16), k.to(torch.bfloat16)
            rq = rotate(qs, torch.tensor([p + offset]))
            rk = rotate(ks, torch.tensor([p]))
            scores.append((rq.float() * rk.float()).sum().item())
    exact = (rotate(q, torch.tensor([offset])) * rotate(k, torch.tensor([0]))).sum().item()
    # bf16 keeps 8 bits of mantissa: each rotated element is within 2^-8 of its value
    tolerance = 2**-7 * (q.abs() * k.abs()).sum().item()
    assert max(abs(s - exact) for s in scores) < tolerance, (exact, scores)


def test_rotary_angles_are_float32_whatever_the_input_dtype() -> None:
    x = torch.ones(1, 1, 261, 4, dtype=torch.bfloat16)
    positions = torch.arange(261)
    got = rotate(x, positions)[0, 0, 256:, 0].float()  # x1 cos - x2 sin, with x1 = x2 = 1
    angles = positions[256:].double()
    want = (angles.cos() - angles.sin()).float()
    assert torch.allclose(got, want, atol=2e-2), (got, want)


def test_an_unwindowed_transformer_refuses_a_carried_context() -> None:
    enc = encoder(window=None)
    with pytest.raises(ValueError, match="model.window=null"):
        enc.run(torch.randn(2, 5, 8))


def test_char_lm_refuses_an_unwindowed_transformer_in_one_line(tmp_path) -> None:
    from conftest import run_train_cli

    result = run_train_cli(
        "task=char_lm", "model=transformer", "model.window=null", cwd=tmp_path, timeout=120
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: task=char_lm: model.window=null"), result.stderr[-1000:]
    assert "Traceback" not in result.stderr
