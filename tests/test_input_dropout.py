"""Input (embedding) dropout: the fast path equals the reference, masks are drawn in order,
and the gradient check covers it."""

import numpy as np
import pytest

from windowner import gradcheck as gc
from windowner.nn.losses import OBJECTIVES

from .helpers import assert_grads_close, make_batch, make_model


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_fast_path_with_input_dropout_equals_reference(objective):
    model = make_model(objective=objective, keep_prob=0.7, input_keep_prob=0.8)
    batch = make_batch(model.spec, np.random.default_rng(1), k=1)
    rng_ref, rng_fast = np.random.default_rng(7), np.random.default_rng(7)
    loss_ref, ref = model.loss_and_grads(batch, rng_ref)
    loss, got = model.loss_and_grads_fast(batch, rng_fast)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert_grads_close(ref, got, {k: v.shape for k, v in model.params.items()}, 1e-12, 1e-15)
    assert rng_ref.bit_generator.state == rng_fast.bit_generator.state


def test_input_dropout_zeroes_inputs_and_their_gradients():
    model = make_model(input_keep_prob=0.5, keep_prob=1.0)
    batch = make_batch(model.spec, np.random.default_rng(2), n=4)
    D = model.spec.input_dim
    input_mask = np.zeros((4, D))
    input_mask[:, :3] = 2.0  # only the first three inputs survive
    _, grads = model.loss_and_grads(batch, input_mask=input_mask)
    assert np.count_nonzero(grads["W"][:, 3:]) == 0
    assert np.count_nonzero(grads["W"][:, :3]) > 0


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_gradcheck_with_input_dropout_only(objective):
    model, batch, masks, rng = gc.safe_example(
        "tanh", objective, 1, keep_prob=1.0, input_keep_prob=0.6
    )
    assert masks[0] is not None and masks[1] is None
    for name, (err, _, _) in gc.check_example(model, batch, masks, rng).items():
        assert err < 1e-6, (objective, name, err)
