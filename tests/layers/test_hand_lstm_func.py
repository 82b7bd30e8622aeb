"""torch.func (grad, vjp, jvp, vmap) and forward-mode AD over HandLSTM against nn.LSTM."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import forward_ad
from torch.func import functional_call, grad, jvp, vjp, vmap
from torch.utils._pytree import tree_leaves

from seqmodels.layers import HandLSTM, HandLSTMCell

IN, H, T, B = 3, 4, 5, 3
F64 = torch.float64
KWARGS = dict(num_layers=2, bidirectional=True, proj_size=2)
pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported"),
    pytest.mark.usefixtures("one_thread_per_module"),
]


def _pair(dtype=F64, **kwargs):
    torch.manual_seed(0)
    ref = nn.LSTM(IN, H, dtype=dtype, **kwargs)
    hand = HandLSTM(IN, H, dtype=dtype, **kwargs)
    hand.load_state_dict(ref.state_dict())
    return ref, hand


def _close(expected, actual, atol=1e-10):
    expected, actual = tree_leaves(expected), tree_leaves(actual)
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a, e, atol=atol, rtol=0)


def _loss(model):
    def loss(params, x):
        out, (h, c) = functional_call(model, params, (x,))
        return (out**2).sum() + (h * c[..., : h.size(-1)]).sum()

    return loss


def test_func_grad_matches_nn_lstm():
    ref, hand = _pair(**KWARGS)
    x = torch.randn(T, B, IN, dtype=F64)
    expected = grad(_loss(ref), argnums=(0, 1))(dict(ref.named_parameters()), x)
    actual = grad(_loss(hand), argnums=(0, 1))(dict(hand.named_parameters()), x)
    _close(expected, actual)


def test_func_vjp_matches_nn_lstm():
    ref, hand = _pair(**KWARGS)
    x = torch.randn(T, B, IN, dtype=F64)
    cotangent = torch.randn(T, B, 4, dtype=F64)
    results = []
    for model in (ref, hand):
        out, pullback = vjp(lambda x, m=model: m(x)[0], x)
        results.append((out, pullback(cotangent)))
    _close(*results)


@pytest.mark.parametrize("wrt", ["input", "weights"])
def test_func_jvp_matches_nn_lstm(wrt):
    ref, hand = _pair(**KWARGS)
    x = torch.randn(T, B, IN, dtype=F64)
    torch.manual_seed(1)
    tangents = {n: torch.randn_like(p) for n, p in ref.named_parameters()}
    results = []
    for model in (ref, hand):
        params = {n: p.detach() for n, p in model.named_parameters()}
        if wrt == "input":
            fn = lambda x, m=model: m(x)  # noqa: E731
            results.append(jvp(fn, (x,), (torch.ones_like(x),)))
        else:
            fn = lambda p, m=model: functional_call(m, p, (x,))  # noqa: E731
            results.append(jvp(fn, (params,), (tangents,)))
    _close(*results)


def test_forward_ad_dual_tensors_match_nn_lstm():
    ref, hand = _pair(**KWARGS)
    x, tangent = torch.randn(T, B, IN, dtype=F64), torch.randn(T, B, IN, dtype=F64)
    results = []
    for model in (ref, hand):
        with forward_ad.dual_level():
            out, (h, c) = model(forward_ad.make_dual(x, tangent))
            results.append([forward_ad.unpack_dual(t) for t in (out, h, c)])
    _close(*results)


def test_jvp_float32_where_nn_lstm_has_no_forward_ad():
    """nn.LSTM's float32 CPU kernel (oneDNN) has no forward-mode AD; HandLSTM's does and
    agrees with nn.LSTM's float64 one (which runs ATen's differentiable decomposition)."""
    ref, hand = _pair(dtype=torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, IN)
    with pytest.raises(NotImplementedError, match="forward AD"):
        jvp(lambda x: ref(x)[0], (x,), (torch.ones_like(x),))
    out, tangent = jvp(lambda x: hand(x)[0], (x,), (torch.ones_like(x),))
    ref64 = ref.double()
    expected = jvp(lambda x: ref64(x)[0], (x.double(),), (torch.ones_like(x, dtype=F64),))
    _close(expected, (out.double(), tangent.double()), atol=1e-5)


def test_vmap_grad_gives_per_sample_gradients_of_nn_lstm():
    """vmap(grad(...)): one gradient per sample, as a loop of grads over nn.LSTM gives them.

    (nn.LSTM itself has no batching rule for ``aten::lstm``, so vmap over it raises.)
    """
    ref, hand = _pair(**KWARGS)
    x = torch.randn(T, B, IN, dtype=F64)  # B samples, each a [T, IN] sequence

    def sample_loss(model):
        return lambda p, x_i: _loss(model)(p, x_i.unsqueeze(1))

    params = dict(hand.named_parameters())
    per_sample = vmap(grad(sample_loss(hand)), in_dims=(None, 1))(params, x)
    ref_params = dict(ref.named_parameters())
    for b in range(B):
        expected = grad(sample_loss(ref))(ref_params, x[:, b])
        _close(expected, {n: g[b] for n, g in per_sample.items()})
    with pytest.raises(RuntimeError, match="Batching rule not implemented for aten::lstm"):
        vmap(lambda x_i: ref(x_i)[0], in_dims=1)(x)


@pytest.mark.parametrize("batch_first", [False, True])
def test_vmap_over_samples_equals_the_batched_call(batch_first):
    ref, hand = _pair(batch_first=batch_first, **KWARGS)
    x = torch.randn(B, T, IN, dtype=F64) if batch_first else torch.randn(T, B, IN, dtype=F64)
    dim = 0 if batch_first else 1
    out, (h, c) = vmap(hand, in_dims=dim, out_dims=(dim, (1, 1)))(x)
    _close(ref(x), (out, (h, c)))


def test_vmap_over_cell_and_func_grad_of_cell():
    torch.manual_seed(0)
    ref, hand = nn.LSTMCell(IN, H, dtype=F64), HandLSTMCell(IN, H, dtype=F64)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(B, IN, dtype=F64)
    _close(ref(x), vmap(hand)(x))

    def loss(model):
        return lambda p, x: sum(t.pow(2).sum() for t in functional_call(model, p, (x,)))

    expected = grad(loss(ref))(dict(ref.named_parameters()), x)
    _close(expected, grad(loss(hand))(dict(hand.named_parameters()), x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_vmap_grad_on_cuda_gives_per_sample_gradients_of_nn_lstm():
    torch.manual_seed(0)
    ref = nn.LSTM(IN, H, dtype=F64, device="cuda", **KWARGS)
    hand = HandLSTM(IN, H, dtype=F64, device="cuda", **KWARGS)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, IN, dtype=F64, device="cuda")

    def sample_loss(model):
        return lambda p, x_i: _loss(model)(p, x_i.unsqueeze(1))

    per_sample = vmap(grad(sample_loss(hand)), in_dims=(None, 1))(dict(hand.named_parameters()), x)
    # nn.LSTM on CUDA with cuDNN on raises under torch.func (its flatten_parameters reads the
    # data pointers of functorch's wrapped weights; seen with torch 2.11 on an H200), so the
    # reference runs ATen's own LSTM: HandLSTM works in both settings.
    with torch.backends.cudnn.flags(enabled=False):
        for b in range(B):
            expected = grad(sample_loss(ref))(dict(ref.named_parameters()), x[:, b])
            _close(expected, {n: g[b] for n, g in per_sample.items()})
