"""The mechanics of TRM that the paper's results rest on: shapes, where gradients flow, halting."""

import pytest
import torch

import train
from trm import TRM, TRMConfig


def tiny(**kw) -> TRM:
    torch.manual_seed(0)
    config = dict(vocab_size=6, seq_len=16, hidden_size=32, num_heads=4, puzzle_emb_len=4, n=3, T=2,
                  N_sup=4)
    return TRM(TRMConfig(**{**config, **kw}))


@pytest.mark.parametrize("mlp_t", [False, True])
def test_shapes(mlp_t, random_batch):
    model = tiny(mlp_t=mlp_t)
    inputs, ids = random_batch(model)
    (y, z), logits, q_halt = model(model.initial_state(5), inputs, ids)
    assert y.shape == z.shape == (5, 4 + 16, 32)  # prefix + grid cells
    assert logits.shape == (5, 16, 6)
    assert q_halt.shape == (5,) and q_halt.dtype == torch.float32


@pytest.mark.parametrize("n,T", [(3, 2), (2, 3), (1, 1)])
def test_only_the_last_recursion_carries_gradient(n, T, random_batch):
    """Per supervision step: T*(n+1) net calls, exactly the last n+1 of them back-propagated."""
    model = tiny(n=n, T=T)
    calls, backward_calls = [], []
    first_block = model.net_layers[0]
    first_block.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    first_block.register_full_backward_hook(lambda m, gi, go: backward_calls.append(1))
    inputs, ids = random_batch(model)
    _, logits, q_halt = model(model.initial_state(5), inputs, ids)
    assert len(calls) == T * (n + 1)
    assert calls == [False] * ((T - 1) * (n + 1)) + [True] * (n + 1)
    (logits.sum() + q_halt.sum()).backward()
    assert len(backward_calls) == n + 1


def test_state_is_detached_between_supervision_steps(random_batch):
    model = tiny()
    inputs, ids = random_batch(model)
    state, _, _ = model(model.initial_state(5), inputs, ids)
    assert not state[0].requires_grad and not state[1].requires_grad
    # the second step's loss depends on the first step only through the (constant) carried state:
    # its gradients equal those of a run started from a copy of that state
    _, logits, _ = model(state, inputs, ids)
    grads = torch.autograd.grad(logits.sum(), list(model.parameters()), allow_unused=True)
    copied = (state[0].clone(), state[1].clone())
    _, logits2, _ = model(copied, inputs, ids)
    grads2 = torch.autograd.grad(logits2.sum(), list(model.parameters()), allow_unused=True)
    for g1, g2 in zip(grads, grads2):
        assert (g1 is None and g2 is None) or torch.equal(g1, g2)


def test_reset_state_only_touches_reset_slots(random_batch):
    model = tiny()
    inputs, ids = random_batch(model)
    state, _, _ = model(model.initial_state(5), inputs, ids)
    reset = torch.tensor([True, False, True, False, False])
    y, z = model.reset_state(state, reset)
    assert torch.equal(y[0, 3], model.y_init) and torch.equal(z[2, 7], model.z_init)
    assert torch.equal(y[1], state[0][1]) and torch.equal(z[4], state[1][4])


def test_halting_rule():
    model = tiny(N_sup=4, halt_exploration_prob=0.0)
    q = torch.tensor([1.0, -1.0, -1.0, 3.0])
    steps = torch.tensor([1, 1, 4, 2])
    assert model.train().halt(q, steps).tolist() == [True, False, True, True]
    # evaluation ignores the halting head: every puzzle runs all N_sup steps
    assert model.eval().halt(q, steps).tolist() == [False, False, True, False]


def test_exploration_delays_halting():
    model = tiny(N_sup=16, halt_exploration_prob=1.0).train()
    torch.manual_seed(0)
    q = torch.full((4000,), 5.0)  # the head wants to halt everywhere
    halted = model.halt(q, torch.ones(4000, dtype=torch.long))
    # every slot explores and draws a minimum of 2..16 steps, so none may stop after step 1
    assert not halted.any()
    halted = model.halt(q, torch.full((4000,), 9, dtype=torch.long))
    # a minimum drawn uniformly from 2..16 is <= 9 for 8 of 15 values
    assert abs(halted.float().mean().item() - 8 / 15) < 0.03


def test_initial_halting_probability_is_small(random_batch):
    model = tiny()
    inputs, ids = random_batch(model)
    _, _, q_halt = model(model.initial_state(5), inputs, ids)
    assert torch.allclose(q_halt, torch.full((5,), -5.0))  # zero weights, bias -5


def test_act_continue_is_hrms_q_learning(random_batch):
    """Table 1's "w/ ACT": both logits, HRM's halting rule, HRM's continue target from one more
    step without gradient, and the step's loss with both BCE terms (weight 0.5)."""
    model = tiny(act_continue=True, N_sup=3, halt_exploration_prob=0.0).train()
    with torch.no_grad():  # non-zero Q head, so that the two logits differ
        model.Q_head.weight.normal_(0, 0.3)
    inputs, ids = random_batch(model, B=4)
    state, logits, q = model(model.initial_state(4), inputs, ids)
    assert q.shape == (4, 2)
    assert torch.equal(model.wants_to_halt(q), q[:, 0] > q[:, 1])
    assert model.calls_per_step()[0] == 2 * model.net_calls()  # the target's forward counts
    _, _, q_next = model(state, inputs, ids)
    steps = torch.tensor([1, 2, 3, 3])  # the last two are at N_sup: they cannot continue
    target = model.continue_target(state, inputs, ids, steps)
    assert not target.requires_grad
    best = torch.where(steps >= 3, q_next[:, 0], q_next.max(-1).values)
    torch.testing.assert_close(target, torch.sigmoid(best))
    carry = train.new_carry(model, type("Set", (), dict(seq_len=16)), 4, "cpu")
    labels = torch.randint(1, 6, (4, 16), dtype=torch.uint8)
    _, loss, _ = train.supervision_step(model, carry, inputs, labels, ids)
    answer, _, exact, _ = train.loss_terms(logits, q, labels, torch.zeros(4))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    halting = bce(q[:, 0], exact.float(), reduction="none") + \
        bce(q[:, 1], model.continue_target(state, inputs, ids, torch.ones(4)), reduction="none")
    torch.testing.assert_close(loss, (answer + 0.5 * halting).mean())


def test_paper_parameter_counts():
    sudoku_mlp = TRM(TRMConfig(vocab_size=11, seq_len=81, mlp_t=True))
    sudoku_att = TRM(TRMConfig(vocab_size=11, seq_len=81))
    maze_att = TRM(TRMConfig(vocab_size=6, seq_len=900, n=4))
    assert sudoku_mlp.num_params() == 5_028_866
    assert sudoku_att.num_params() == 6_828_034
    assert maze_att.num_params() == 6_822_914
