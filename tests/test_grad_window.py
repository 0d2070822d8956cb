"""The gradient window (--grad-window): only the last K net calls of a supervision step carry
gradient, checked against a naive autograd transcription; what it costs in memory, measured; and
TRM's separate-networks ablation (--separate-nets, TRM paper Table 1)."""

import pytest
import torch
import torch.nn.functional as F

from hrm import HRM, HRMConfig
from lib import config
from trm import TRM, TRMConfig

# tiny float64 models: the model and the naive loop run the same ops, so gradients agree to
# rounding; one block per net keeps a full sweep of windows to about a second
TINY = dict(vocab_size=6, seq_len=8, hidden_size=16, num_heads=2, num_layers=1, puzzle_emb_len=2)


def tiny_trm(**kw) -> TRM:
    torch.manual_seed(0)
    return TRM(TRMConfig(**{**TINY, **kw})).double()


def tiny_hrm(**kw) -> HRM:
    torch.manual_seed(0)
    return HRM(HRMConfig(**{**TINY, **kw})).double()


def batch(model, B=3):
    torch.manual_seed(1)
    inputs = torch.randint(1, model.config.vocab_size, (B, model.config.seq_len))
    labels = torch.randint(0, model.config.vocab_size, (B, model.config.seq_len))
    # a state already moved by one step, so that y and z (z_H and z_L) differ per slot
    with torch.no_grad():
        state, _, _ = model(model.initial_state(B), inputs, torch.zeros(B, dtype=torch.long))
    return inputs, labels, state


def loss_of(logits, q, labels):
    # answer loss plus the halting head, so that every head gets a gradient
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten()) + q.sum()


def param_grads(model, loss) -> dict:
    named = [(k, p) for k, p in model.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(named, grads)}


def blocks(model, layers, h):
    rope = None if model.config.mlp_t else (model.rope_cos, model.rope_sin)
    for block in layers:
        h = block(h, rope)
    return h


def naive_trm(model, inputs, labels, state, w):
    """One TRM supervision step written out: all T(n+1) calls in a plain loop with autograd on,
    the states detached where they enter the last w calls."""
    c = model.config
    x = model.input_embedding(inputs, torch.zeros(len(inputs), dtype=torch.long))
    y_layers = model.y_net_layers if c.separate_nets else model.net_layers
    kinds = (["z"] * c.n + ["y"]) * c.T
    y, z = state
    for i, kind in enumerate(kinds):
        if i == len(kinds) - w:
            y, z = y.detach(), z.detach()
        if kind == "z":
            z = blocks(model, model.net_layers, z + (y + x))
        else:
            y = blocks(model, y_layers, y + z)
    logits = model.output_head(y)[:, c.puzzle_emb_len:]
    return loss_of(logits, model.Q_head(y[:, 0])[:, 0], labels)


def naive_hrm(model, inputs, labels, state, w):
    """One HRM segment written out: N cycles of (T f_L calls, one f_H call) with autograd on, the
    states detached where they enter the last w calls."""
    c = model.config
    x = model.input_embedding(inputs, torch.zeros(len(inputs), dtype=torch.long))
    kinds = (["L"] * c.T + ["H"]) * c.N
    z_H, z_L = state
    for i, kind in enumerate(kinds):
        if i == len(kinds) - w:
            z_H, z_L = z_H.detach(), z_L.detach()
        if kind == "L":
            z_L = blocks(model, model.L_layers, z_L + (z_H + x))
        else:
            z_H = blocks(model, model.H_layers, z_H + z_L)
    logits = model.output_head(z_H)[:, c.puzzle_emb_len:]
    return loss_of(logits, model.Q_head(z_H[:, 0]), labels)


def model_step(model, inputs, labels, state):
    new_state, logits, q = model(state, inputs, torch.zeros(len(inputs), dtype=torch.long))
    assert not new_state[0].requires_grad and not new_state[1].requires_grad  # deep supervision
    return loss_of(logits, q, labels)


def window_sweep(make, naive, first_blocks, **kw):
    """For every window w = 1 .. all calls: the model's gradients equal the naive loop's, the
    calls run with autograd on are exactly the last w, and calls_per_step reports w."""
    calls = make(**kw).net_calls()
    seen = []
    for w in range(1, calls + 1):
        model = make(**kw, grad_window=w)
        inputs, labels, state = batch(model)
        grad_on = []
        hooks = [b.register_forward_hook(lambda m, i, o: grad_on.append(torch.is_grad_enabled()))
                 for b in first_blocks(model)]
        ours = param_grads(model, model_step(model, inputs, labels, state))
        for h in hooks:
            h.remove()
        assert grad_on == [False] * (calls - w) + [True] * w
        assert model.calls_per_step()[1] == w
        ref = param_grads(model, naive(model, inputs, labels, state, w))
        for k in ours:
            torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=1e-6, msg=f"w={w} {k}")
        seen.append(torch.cat([g.flatten() for g in ours.values()]))
    # each longer window changes the gradient: the window is not ignored somewhere
    assert all(not torch.allclose(a, b) for a, b in zip(seen, seen[1:]))


@pytest.mark.parametrize("n,T,separate_nets", [(3, 2, False), (1, 3, True)])
def test_trm_window_gradients_match_a_naive_loop(n, T, separate_nets):
    def first_blocks(m):  # the z net's first block, and the y net's where it has its own
        return [m.net_layers[0]] + ([m.y_net_layers[0]] if separate_nets else [])
    window_sweep(tiny_trm, naive_trm, first_blocks, n=n, T=T, separate_nets=separate_nets)


@pytest.mark.parametrize("N,T", [(2, 2), (3, 1)])
def test_hrm_window_gradients_match_a_naive_loop(N, T):
    window_sweep(tiny_hrm, naive_hrm, lambda m: [m.L_layers[0], m.H_layers[0]], N=N, T=T)


@pytest.mark.parametrize("make,own,kw", [(tiny_trm, lambda c: c.n + 1, dict(n=3, T=2)),
                                         (tiny_trm, lambda c: c.n + 1, dict(n=2, T=3)),
                                         (tiny_hrm, lambda c: 2, dict(N=2, T=2))])
def test_the_default_window_is_the_papers_rule(make, own, kw):
    """Unset, the window is TRM's last recursion (n+1) or HRM's one-step gradient (2), bit for
    bit the same gradients as that window given explicitly."""
    default = make(**kw)
    explicit = make(**kw, grad_window=own(default.config))
    assert default.grad_window == explicit.grad_window == own(default.config)
    grads = []
    for model in (default, explicit):
        inputs, labels, state = batch(model)
        grads.append(param_grads(model, model_step(model, inputs, labels, state)))
    assert all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])


def saved_bytes(model) -> int:
    """Bytes of the distinct storages autograd keeps for backward in one supervision step, the
    weights left out (they exist whatever the window): the activations."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    inputs, labels, state = batch(model)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model_step(model, inputs, labels, state)
    return sum(storages.values())


@pytest.mark.parametrize("make,kw", [(tiny_trm, dict(n=3, T=2)), (tiny_hrm, dict(N=2, T=2))])
def test_memory_grows_with_the_window(make, kw):
    """Full BPTT costs memory: the activations autograd saves grow strictly and about linearly
    with the window (each call of these nets keeps activations of the same shapes)."""
    calls = make(**kw).net_calls()
    used = [saved_bytes(make(**kw, grad_window=w)) for w in range(1, calls + 1)]
    per_call = [b - a for a, b in zip(used, used[1:])]
    assert min(per_call) > 0, used
    assert max(per_call) < 1.2 * min(per_call), per_call
    assert used[-1] > 2 * used[0]  # full BPTT keeps several times the 1-call window's tensors


@pytest.mark.parametrize("argv,message", [
    (["--grad-window", "99", "--task", "sudoku4"],  # sudoku4: TRM n=3, T=2
     "--grad-window 99 is more than the 8 = T 2 x (n 3 + 1) net calls of one supervision step; "
     "--grad-window 8 back-propagates through all of them (full BPTT)"),
    (["--model", "hrm", "--grad-window", "7", "--task", "sudoku4"],  # HRM N=2, T=2
     "--grad-window 7 is more than the 6 = N 2 x (T 2 + 1) net calls"),
    (["--grad-window", "0", "--task", "sudoku4"], "--grad-window 0 must be at least 1")])
def test_a_window_larger_than_the_step_is_refused_in_one_line(argv, message):
    with pytest.raises(SystemExit) as e:
        config.resolve_config(argv)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_model_refuses_a_window_it_cannot_run():
    with pytest.raises(ValueError, match="grad_window 9 must be 1 .. T"):
        tiny_trm(n=3, T=2, grad_window=9)


def test_unset_flags_take_the_models_defaults():
    cfg = config.resolve_config(["--task", "sudoku4"])
    assert (cfg["grad_window"], cfg["separate_nets"]) == (None, False)
    cfg = config.resolve_config(["--model", "hrm", "--task", "sudoku4", "--grad-window", "6"])
    assert cfg["grad_window"] == 6 and "separate_nets" not in cfg


def test_separate_nets_give_the_y_update_its_own_weights():
    """Table 1's "separate f_H, f_L": z updates run net_layers, y updates y_net_layers; both get
    gradient, and the parameter count grows by exactly one network."""
    shared, separate = tiny_trm(n=2, T=2), tiny_trm(n=2, T=2, separate_nets=True)
    net_params = sum(p.numel() for p in shared.net_layers.parameters())
    assert separate.num_params() == shared.num_params() + net_params
    inputs, labels, state = batch(separate)
    runs = {"z": [], "y": []}
    separate.net_layers[0].register_forward_hook(lambda m, i, o: runs["z"].append(1))
    separate.y_net_layers[0].register_forward_hook(lambda m, i, o: runs["y"].append(1))
    grads = param_grads(separate, model_step(separate, inputs, labels, state))
    assert (len(runs["z"]), len(runs["y"])) == (2 * 2, 2)  # T n z updates, T y updates
    for name in ("net_layers", "y_net_layers"):
        assert all(g.abs().sum() > 0 for k, g in grads.items() if k.startswith(name + "."))


def test_the_default_state_dict_keeps_the_official_layout():
    """Without separate_nets there is no second network: the keys (and shapes) are those of the
    official checkpoints, which load strictly (tests/test_golden.py)."""
    shared, separate = tiny_trm(), tiny_trm(separate_nets=True)
    default_keys = {k: v.shape for k, v in shared.state_dict().items()}
    assert not any(k.startswith("y_net_layers") for k in default_keys)
    extra = {k: v.shape for k, v in separate.state_dict().items() if k not in default_keys}
    assert extra == {"y_" + k: s for k, s in default_keys.items() if k.startswith("net_layers.")}
