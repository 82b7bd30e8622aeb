"""minGRU/minLSTM: every scan form against the sequential twin (the step-by-step replay),
carried state, padding, gradcheck."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from native_check import native_runs, require_native

from seqmodels.layers import native_scan
from seqmodels.layers.linear_scan import FORMS
from seqmodels.layers.min_rnn import MIN_CELLS, MinRNNEncoder, scan_form
from seqmodels.layers.parallel_scan import parallel_scan, sequential_scan

TOL = 1e-10
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def encoder(cell: str, **kwargs) -> MinRNNEncoder:
    torch.manual_seed(0)
    return MinRNNEncoder(cell, 5, 6, **{"num_layers": 3, **kwargs}).double().eval()


def outputs_and_grads(enc: MinRNNEncoder, x: torch.Tensor, scan: str | None, lengths=None):
    """Outputs and the gradients of every input and parameter; ``scan=None``: the sequential
    twin (the replay the callbacks read: every step its own node of the graph)."""
    x = x.clone().requires_grad_(True)
    if scan is None:
        out = enc.unroll(x, lengths, keep_gates=False).output
        if lengths is not None:
            out = out * (torch.arange(x.size(1)) < lengths.unsqueeze(1)).unsqueeze(-1)
    else:
        enc.scan = scan
        out = enc(x, lengths)
    weights = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out * weights).sum(), [x, *enc.parameters()])
    return out, grads


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("scan", FORMS)
def test_every_scan_form_and_the_sequential_steps_agree(cell, bidirectional, scan) -> None:
    enc = encoder(cell, bidirectional=bidirectional)
    x = torch.randn(4, 50, 5, dtype=torch.double)
    lengths = torch.tensor([50, 31, 7, 1]) if bidirectional else None
    with native_runs(scan):
        out_p, grads_p = outputs_and_grads(enc, x, scan, lengths=lengths)
    out_s, grads_s = outputs_and_grads(enc, x, None, lengths=lengths)
    assert out_p.abs().max() > 0.1  # a real output, not zeros agreeing with zeros
    torch.testing.assert_close(out_p, out_s, rtol=0, atol=TOL)
    for gp, gs in zip(grads_p, grads_s):
        torch.testing.assert_close(gp, gs, rtol=0, atol=TOL)


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("sign", [1.0, 0.0, -1.0])
def test_a_carried_state_of_any_sign_gives_the_same_states_and_gradients_by_every_form(
    cell: str, sign: float
) -> None:
    """``log`` takes positive states only and runs the others by the loop (the same numbers)."""
    enc = encoder(cell)
    x = torch.randn(2, 20, 5, dtype=torch.double)
    state = sign * torch.rand(3, 2, 6, dtype=torch.double).add(0.1)
    results = []
    for scan in FORMS:
        enc.scan = scan
        h0 = state.clone().requires_grad_(True)
        out, final = enc.run(x, h0)
        grads = torch.autograd.grad(out.square().sum() + final.sum(), [h0, *enc.parameters()])
        results.append((out, final, *grads))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            torch.testing.assert_close(got, want, rtol=0, atol=TOL)


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("scan", FORMS)
def test_carried_state_across_windows_equals_one_long_sequence(cell: str, scan: str) -> None:
    enc = encoder(cell, scan=scan)
    x = torch.randn(2, 60, 5, dtype=torch.double)
    whole, state_whole = enc.run(x)
    state, pieces = None, []
    for window in x.split(13, dim=1):  # 13, 13, 13, 13, 8: the last window shorter
        out, state = enc.run(window, state)
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=0, atol=TOL)
    torch.testing.assert_close(state, state_whole, rtol=0, atol=TOL)
    # one character at a time (how generation steps) gives the same states as well
    state, steps = None, []
    for t in range(x.size(1)):
        out, state = enc.run(x[:, t : t + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=0, atol=TOL)
    assert state.shape == (3, 2, 6)


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("scan", FORMS)
def test_padding_never_reaches_a_real_step_in_either_direction(cell: str, scan: str) -> None:
    enc = encoder(cell, bidirectional=True, scan=scan)
    x = torch.randn(3, 12, 5, dtype=torch.double)
    lengths = torch.tensor([12, 8, 3])
    batch = enc(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = enc(x[b : b + 1, :n])
        torch.testing.assert_close(batch[b : b + 1, :n], alone, rtol=0, atol=TOL)
        assert batch[b, n:].abs().max() == 0 if n < 12 else True
    garbage = x.clone()
    garbage[1, 8:] = 1e3  # whatever sits in the padding changes nothing
    torch.testing.assert_close(enc(garbage, lengths), batch, rtol=0, atol=TOL)


def test_scan_gradcheck_with_a_carried_state() -> None:
    torch.manual_seed(0)
    log_a = torch.randn(2, 9, 3, dtype=torch.double).sigmoid().log().requires_grad_(True)
    log_b = torch.randn(2, 9, 3, dtype=torch.double).requires_grad_(True)
    h0 = torch.rand(2, 3, dtype=torch.double).add(0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(parallel_scan, (log_a, log_b, h0))
    assert torch.autograd.gradcheck(lambda a, b: parallel_scan(a, b), (log_a, log_b))


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("scan", FORMS)
def test_encoder_gradcheck(cell: str, scan: str) -> None:
    enc = encoder(cell, num_layers=2, scan=scan)
    x = torch.randn(2, 6, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: enc(inp), (x,), fast_mode=True)


def test_zero_state_has_finite_gradients_and_long_float32_scan_stays_accurate() -> None:
    torch.manual_seed(0)
    a = torch.rand(2, 4096, 4).mul(0.5).add(0.45)  # forget ~0.45..0.95: A_T ~ -1400
    b = torch.rand(2, 4096, 4)
    h0 = torch.zeros(2, 4, requires_grad=True)
    h = parallel_scan(a.log(), b.log(), h0)
    (grad,) = torch.autograd.grad(h.sum(), h0)
    assert torch.isfinite(grad).all()
    reference = torch.stack(sequential_scan(a.double(), b.double()), dim=1)
    assert torch.isfinite(h).all()
    assert ((h.double() - reference).abs() / reference).max() < 1e-3


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_replay_for_the_callbacks_is_the_forward_without_dropout_or_random_numbers(cell: str):
    enc = encoder(cell, bidirectional=True, dropout=0.5).train()
    x = torch.randn(3, 9, 5, dtype=torch.double)
    lengths = torch.tensor([9, 4, 6])
    rng = torch.get_rng_state()
    replay = enc.unroll(x, lengths)
    assert torch.equal(torch.get_rng_state(), rng) and enc.training  # mode given back
    real = (torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    torch.testing.assert_close(replay.output * real, enc.eval()(x, lengths), rtol=0, atol=TOL)
    names = {"mingru": {"update", "new"}, "minlstm": {"forget", "input", "cell"}}[cell]
    assert set(replay.gates[(2, 1)]) == names and len(replay.states[(2, 0)]) == 9
    if cell == "minlstm":  # the normalised gates sum to one
        gates = replay.gates[(0, 0)]
        torch.testing.assert_close(
            gates["forget"] + gates["input"], torch.ones_like(gates["input"])
        )


def test_scan_bench_script_measures_every_run_and_prints_the_ratios_last(tmp_path, capsys):
    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_scan.py"
    spec = importlib.util.spec_from_file_location("bench_scan", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    plot, rows = tmp_path / "scan.png", tmp_path / "scan.json"
    bench.main(
        [
            "--lengths",
            "8,16",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--plot",
            str(plot),
            "--json",
            str(rows),
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("train, scan: auto (") and "minlstm 16: " in lines[-2]
    assert lines[-1].startswith("infer, scan: auto (") and lines[-1].endswith("x")
    assert len(json.loads(rows.read_text())) == 2 * 10 and plot.stat().st_size > 10_000


def test_model_config_chooses_the_scan_and_old_configs_keep_loading() -> None:
    from seqmodels.layers.encoders import other_encoder

    model = {"cell": "minlstm", "hidden_size": 4, "num_layers": 2, "forget_bias": None}
    assert other_encoder(model, 3).scan == "auto"
    assert other_encoder({**model, "scan": "chunked"}, 3).scan == "chunked"
    # checkpoints written before model.scan carry parallel: false = sequential steps
    assert other_encoder({**model, "parallel": False}, 3).scan == "loop"
    assert other_encoder({**model, "parallel": True}, 3).scan == "auto"
    with pytest.raises(ValueError, match="model.scan must be one of auto, loop"):
        other_encoder({**model, "scan": "fast"}, 3)


def test_auto_takes_the_native_loop_on_a_cpu_and_the_log_scan_on_a_gpu() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert scan_form("auto", cpu) == ("native" if native_scan.available() else "loop")
    assert scan_form("auto", gpu) == scan_form("native", gpu) == "log"
    assert scan_form("chunked", gpu) == "chunked"


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_float32_native_form_with_onednn_projections_matches_the_loop(cell: str) -> None:
    torch.manual_seed(0)
    enc = MinRNNEncoder(cell, 5, 6, num_layers=2, bidirectional=True)
    x = torch.randn(3, 40, 5)
    results = []
    for scan in ("loop", "native"):
        enc.scan = scan
        xx = x.clone().requires_grad_(True)
        out = enc(xx, torch.tensor([40, 17, 3]))
        results.append((out, *torch.autograd.grad(out.sin().sum(), [xx, *enc.parameters()])))
        with torch.inference_mode():
            results.append((enc(x, torch.tensor([40, 17, 3])),))
    for got, want in zip(results[2] + results[3], results[0] + results[1]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_extreme_preactivations_stay_finite_and_exact_in_the_native_layer(cell: str) -> None:
    """Gates saturated far past float32's exponent range (|k| up to ~1000) on both sides."""
    enc = encoder(cell, num_layers=1, scan="native")
    x = 300 * torch.randn(2, 30, 5, dtype=torch.double)
    with native_runs():
        native = enc(x)
    enc.scan = "log"
    torch.testing.assert_close(native, enc(x), rtol=0, atol=TOL)
    enc.scan = "native"
    with torch.no_grad():
        assert torch.isfinite(enc.float()(x.float())).all()


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_native_layer_gradcheck(cell: str) -> None:
    require_native()
    torch.manual_seed(0)
    width = 2 if cell == "mingru" else 3
    pre = torch.randn(2, 7, width * 3, dtype=torch.double, requires_grad=True)
    bias = torch.randn(width * 3, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    layer = native_scan.MinRNNLayer.apply
    assert torch.autograd.gradcheck(lambda *t: layer(*t, cell), (pre, bias, h0))


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_first_layer_sees_the_size_of_raw_features(cell: str) -> None:
    """The adding problem's steps are ``(value, marker)``: two steps that differ only in the
    value's size must give different states (a LayerNorm over the 2 features made them equal)."""
    torch.manual_seed(0)
    enc = MinRNNEncoder(cell, 2, 8, num_layers=2, scan="loop").eval()
    small = torch.tensor([[[0.2, 0.0], [0.1, 1.0]]])
    large = torch.tensor([[[0.9, 0.0], [0.7, 1.0]]])
    assert (enc(small) - enc(large)).abs().max() > 1e-3


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_a_carried_state_for_one_sequence_is_every_sequences_and_a_wrong_one_is_refused(cell):
    """``run(x, state)`` with a ``[L, 1, H]`` state: the same states by every form (the loop
    broadcasts it; the C code must not read B*H values from an H-value buffer)."""
    enc = encoder(cell, num_layers=2)
    x = torch.randn(4, 6, 5, dtype=torch.double)
    state = torch.randn(2, 1, 6, dtype=torch.double)
    enc.scan = "loop"
    want = enc.run(x, state)
    with native_runs():
        enc.scan = "native"
        got = enc.run(x, state)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=TOL)
    for scan in ("loop", "native"):  # another batch size, another hidden size
        enc.scan = scan
        for wrong in (torch.randn(2, 3, 6), torch.randn(2, 4, 9)):
            with pytest.raises((RuntimeError, ValueError)):
                enc.run(x, wrong.double())
    if native_scan.available():
        width = 2 if cell == "mingru" else 3
        pre, h0 = torch.randn(4, 6, width * 6).double(), torch.randn(4, 6).double()
        for bias, h in ((torch.randn(width * 5), h0), (torch.randn(width * 6), h0[:1])):
            with pytest.raises(ValueError, match="MinRNNLayer"):
                native_scan.MinRNNLayer.apply(pre, bias.double(), h, cell)
        with pytest.raises(ValueError, match="MinRNNLayer"):
            native_scan.MinRNNLayer.apply(pre.float(), torch.randn(width * 6).double(), h0, cell)


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_runs_every_scan_in_its_own_dtype(cell, dtype) -> None:
    """``precision=bf16-true`` or ``model.half()``: the states come back in the model's dtype
    for the next LayerNorm, whichever form computed them (native and log do so in float32)."""
    torch.manual_seed(0)
    enc = MinRNNEncoder(cell, 5, 6, num_layers=2, bidirectional=True).to(dtype)
    x = torch.randn(3, 20, 5)
    enc.scan = "loop"
    want = enc(x.to(dtype)).float()
    for scan in ("auto", "native", "log", "chunked"):
        enc.scan = scan
        out = enc(x.to(dtype), torch.tensor([20, 9, 1]))
        assert out.dtype == dtype
        torch.testing.assert_close(out[0].float(), want[0], rtol=0, atol=0.1)


@pytest.mark.parametrize("shift", [0.0, -70.0, -85.0, -300.0])
def test_native_minlstm_float32_matches_float64_on_both_of_its_paths(shift: float) -> None:
    """The float32 kernel takes the unscaled gate ratio while every -k of a step is <= 80 and
    the rescaled one beyond; float64 switches at 700. Both gates pushed far down together (the
    ratio of two tiny gates still matters) must give float64's states and gradients."""
    require_native()
    torch.manual_seed(0)
    pre = torch.randn(2, 9, 3 * 4, dtype=torch.double)
    pre[:, ::2, : 2 * 4] += shift  # every other step: forget and input pre-activations shifted
    pre.requires_grad_(True)
    bias = torch.randn(3 * 4, dtype=torch.double, requires_grad=True)
    h0 = torch.rand(2, 4, dtype=torch.double, requires_grad=True)
    weight = torch.randn(2, 9, 4, dtype=torch.double)
    results = []
    for dtype in (torch.double, torch.float):
        args = [t.detach().to(dtype).requires_grad_(True) for t in (pre, bias, h0)]
        h = native_scan.MinRNNLayer.apply(*args, "minlstm")
        grads = torch.autograd.grad((h * weight.to(dtype)).sum(), args)
        results.append([h.double(), *(g.double() for g in grads)])
    for want, got in zip(*results, strict=True):
        assert torch.isfinite(got).all()
        # float32 reads a pre-activation of -300 to ~2e-5; a wrong gate ratio is off by ~0.1-1
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5)
