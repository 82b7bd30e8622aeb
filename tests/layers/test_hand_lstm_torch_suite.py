"""PyTorch's own module tests for nn.LSTM / nn.LSTMCell, run on HandLSTM / HandLSTMCell.

``torch.testing._internal.common_modules.module_db`` holds the samples PyTorch's
``test/test_modules.py`` runs on every module: constructor and forward inputs (here the
no-batch-dim cases with its reference function), and the error inputs with their expected
exception and message. Each sample is run on the hand module and on nn's, and the checks of
``test_modules.py`` are repeated: outputs equal, ``gradcheck`` and ``gradgradcheck`` with
batched gradients (``check_batched_grad=True``, PyTorch's default there), errors as listed.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from seqmodels.layers import HandLSTM, HandLSTMCell

pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest (dev extra)")
_frozen = torch.backends.flags_frozen()
from torch.testing._internal import common_modules, common_utils  # noqa: E402

# Importing common_utils calls torch.backends.disable_global_flags() (PyTorch's own test-suite
# rule: flags only inside `flags()` blocks). Lightning sets cudnn.benchmark in the Trainer, so
# the rest of this test session needs the flags settable again: undo it where torch keeps it.
torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = not _frozen
assert torch.backends.flags_frozen() == _frozen
pytestmark = [
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported"),
    pytest.mark.usefixtures("one_thread_per_module"),
]

HAND = {nn.LSTM: HandLSTM, nn.LSTMCell: HandLSTMCell}
INFOS = {info.module_cls: info for info in common_modules.module_db if info.module_cls in HAND}


def _samples(ref_cls, dtype: torch.dtype, training: bool = True) -> list:
    info = INFOS[ref_cls]
    return info.module_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=True, training=training
    )


SAMPLES = [(cls, k) for cls in INFOS for k in range(len(_samples(cls, torch.float64)))]
IDS = [f"{cls.__name__}-{k}" for cls, k in SAMPLES]


def _build(cls, sample, dtype, training):
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    torch.manual_seed(0)
    return cls(*args, **kwargs).to(dtype).train(training)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("ref_cls,k", SAMPLES, ids=IDS)
def test_forward_matches_nn_and_torch_reference(ref_cls, k, dtype, training):
    sample = _samples(ref_cls, dtype, training)[k]
    ref = _build(ref_cls, sample, dtype, training)
    hand = _build(HAND[ref_cls], sample, dtype, training)
    args = sample.forward_input.args
    expected, actual = ref(*args), hand(*args)
    atol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)
    torch.testing.assert_close(actual, sample.reference_fn(hand, *args), atol=atol, rtol=0)


@pytest.mark.parametrize("check", ["gradcheck", "gradgradcheck"])
@pytest.mark.parametrize("ref_cls,k", SAMPLES, ids=IDS)
def test_gradcheck_and_gradgradcheck_with_batched_grads(ref_cls, k, check):
    sample = _samples(ref_cls, torch.float64)[k]
    hand = _build(HAND[ref_cls], sample, torch.float64, True)
    flat, spec = tree_flatten(sample.forward_input.args)
    params = tuple(hand.parameters())

    def fn(*flat_inputs_and_params):
        args = tree_unflatten(list(flat_inputs_and_params[: len(flat)]), spec)
        return tuple(tree_flatten(hand(*args))[0])

    with common_utils.freeze_rng_state():
        assert getattr(common_utils, check)(fn, (*flat, *params))  # check_batched_grad=True


def _error_inputs():
    for ref_cls, info in INFOS.items():
        for dtype in (torch.float32, torch.float64):
            errors = info.module_error_inputs_func(
                info, device="cpu", dtype=dtype, requires_grad=False, training=True
            )
            for k, error in enumerate(errors):
                yield pytest.param(ref_cls, error, id=f"{ref_cls.__name__}-{dtype}-{k}")


@pytest.mark.parametrize("ref_cls,error", list(_error_inputs()))
def test_error_inputs_raise_as_listed_for_nn(ref_cls, error):
    sample = error.module_error_input
    cls = HAND[ref_cls]
    with pytest.raises(error.error_type) as info:
        module = cls(*sample.constructor_input.args, **sample.constructor_input.kwargs)
        if error.error_on == common_modules.ModuleErrorEnum.FORWARD_ERROR:
            module(*sample.forward_input.args, **sample.forward_input.kwargs)
    assert re.search(error.error_regex, str(info.value))
