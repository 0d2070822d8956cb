"""The mechanics of HRM: the one-step gradient, the detached carry, Q-learning halting."""

import pytest
import torch

import train
from hrm import HRM, HRMConfig


def tiny(**kw) -> HRM:
    torch.manual_seed(0)
    config = dict(vocab_size=6, seq_len=16, hidden_size=32, num_heads=4, num_layers=2, N=2, T=2,
                  M_max=4)
    return HRM(HRMConfig(**{**config, **kw}))


def record_calls(module, calls: list, backward_calls: list):
    module.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    module.register_full_backward_hook(lambda m, gi, go: backward_calls.append(1))


@pytest.mark.parametrize("mlp_t", [False, True])
def test_shapes(mlp_t, random_batch):
    model = tiny(mlp_t=mlp_t)
    inputs, ids = random_batch(model)
    (z_H, z_L), logits, q = model(model.initial_state(5), inputs, ids)
    assert z_H.shape == z_L.shape == (5, 1 + 16, 32)  # one prefix token + grid cells
    assert logits.shape == (5, 16, 6)
    assert q.shape == (5, 2) and q.dtype == torch.float32


@pytest.mark.parametrize("N,T", [(2, 2), (3, 2), (2, 3), (1, 1)])
def test_one_step_gradient(N, T, random_batch):
    """Per segment: N*T f_L calls and N f_H calls, in the order L..L H L..L H, and only the last
    f_L call and the last f_H call back-propagated."""
    model = tiny(N=N, T=T)
    L_calls, H_calls, L_back, H_back, order = [], [], [], [], []
    record_calls(model.L_layers[0], L_calls, L_back)
    record_calls(model.H_layers[0], H_calls, H_back)
    model.L_layers[0].register_forward_hook(lambda m, i, o: order.append("L"))
    model.H_layers[0].register_forward_hook(lambda m, i, o: order.append("H"))
    inputs, ids = random_batch(model)
    _, logits, q = model(model.initial_state(5), inputs, ids)
    assert "".join(order) == ("L" * T + "H") * N
    assert L_calls == [False] * (N * T - 1) + [True]
    assert H_calls == [False] * (N - 1) + [True]
    (logits.sum() + q.sum()).backward()
    assert len(L_back) == 1 and len(H_back) == 1


def test_only_the_low_level_sees_the_input(random_batch):
    """f_L(z_L, z_H, x) gets z_H + x injected; f_H(z_H, z_L) only z_L (official input injection)."""
    model = tiny()
    inputs, ids = random_batch(model)
    x = model.input_embedding(inputs, ids)
    z_H, z_L = model.initial_state(5)
    injected = {}

    def keep_first(name):
        def hook(module, args):
            injected.setdefault(name, args[0])  # the first block's input: h + injection
        return hook

    model.L_layers[0].register_forward_pre_hook(keep_first("L"))
    model.H_layers[0].register_forward_pre_hook(keep_first("H"))
    model.segment(x, z_H, z_L)
    assert torch.allclose(injected["L"], z_L + z_H + x)
    first_L = model.L_net(z_L, z_H, x)
    second_L = model.L_net(first_L, z_H, x)
    assert torch.allclose(injected["H"], z_H + second_L, atol=1e-6)


def test_carry_is_detached_between_segments(random_batch):
    model = tiny()
    inputs, ids = random_batch(model)
    state, _, _ = model(model.initial_state(5), inputs, ids)
    assert not state[0].requires_grad and not state[1].requires_grad
    _, logits, _ = model(state, inputs, ids)
    grads = torch.autograd.grad(logits.sum(), list(model.parameters()), allow_unused=True)
    _, logits2, _ = model((state[0].clone(), state[1].clone()), inputs, ids)
    grads2 = torch.autograd.grad(logits2.sum(), list(model.parameters()), allow_unused=True)
    for g1, g2 in zip(grads, grads2):
        assert (g1 is None and g2 is None) or torch.equal(g1, g2)


def test_halting_rule():
    model = tiny(M_max=4, halt_exploration_prob=0.0)
    q = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [-3.0, -1.0], [0.5, 0.5]])  # (halt, continue)
    steps = torch.tensor([1, 1, 4, 2])
    # halt when Q(halt) > Q(continue) (strictly), or at M_max
    assert model.train().halt(q, steps).tolist() == [True, False, True, False]
    # evaluation ignores the Q head: every puzzle runs all M_max segments
    assert model.eval().halt(q, steps).tolist() == [False, False, True, False]


def test_continue_target_is_the_next_segments_value(random_batch):
    model = tiny(M_max=4).train()
    with torch.no_grad():  # non-zero Q head, so that the two logits differ
        model.Q_head.weight.normal_(0, 0.3)
    inputs, ids = random_batch(model, B=4)
    state, _, _ = model(model.initial_state(4), inputs, ids)
    _, _, q_next = model(state, inputs, ids)
    steps = torch.tensor([1, 2, 3, 4])  # the last slot is at M_max: it cannot continue
    target = model.continue_target(state, inputs, ids, steps)
    best = q_next.max(-1).values
    assert torch.allclose(target[:3], torch.sigmoid(best[:3]))
    assert torch.allclose(target[3], torch.sigmoid(q_next[3, 0]))
    assert not target.requires_grad
    # train.py's halting loss has one term per head: BCE(halt, exact) + BCE(continue, target)
    _, _, q = model(model.initial_state(4), inputs, ids)
    exact = torch.tensor([True, False, False, True])
    labels = torch.ones(4, 16, dtype=torch.long)
    logits = torch.zeros(4, 16, 6)
    logits[exact, :, 1] = 1.0  # rows 0 and 3 answer every cell right
    _, loss, right, _ = train.loss_terms(logits, q, labels, target)
    assert torch.equal(right, exact)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(q[:, 0], exact.float(), reduction="none") + \
        bce(q[:, 1], target, reduction="none")
    assert torch.allclose(loss, expected)


def test_initial_q_values_are_equal_and_low(random_batch):
    model = tiny()
    inputs, ids = random_batch(model)
    _, _, q = model(model.initial_state(5), inputs, ids)
    assert torch.allclose(q, torch.full((5, 2), -5.0))  # zero weights, bias -5: never halts early


def test_paper_parameter_counts():
    assert HRM(HRMConfig(vocab_size=11, seq_len=81)).num_params() == 27_275_266
    assert HRM(HRMConfig(vocab_size=6, seq_len=900)).num_params() == 27_270_146
