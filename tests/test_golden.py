"""Equivalence with the official implementations.

The fixtures in tests/fixtures/golden were produced by the official code (the TRM repository
SamsungSAILMontreal/TinyRecursiveModels and its port of sapientinc/HRM) on tiny random models;
loaded with the same weights, trm.py and hrm.py must reproduce their per-step eval logits, halting
logits, gradients and (HRM) the Q-learning continue target."""

from pathlib import Path

import pytest
import torch

import hrm
from lib import official
import trm

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"  # its README says what each holds
RTOL = 1e-4
MODELS = {"trm_att": trm, "trm_mlp": trm, "hrm_att": hrm}


def golden(name: str) -> dict:
    return torch.load(GOLDEN / f"{name}.pt", weights_only=True)


def model_from_golden(name: str, g: dict):
    """The golden model in trm.py / hrm.py, its config built from the official config's arch
    fields by official.model_config, as --official does with all_config.yaml."""
    c = g["config"]
    arch = {k: v for k, v in c.items() if k in official.USED}
    arch["name"] = "trm" if MODELS[name] is trm else "hrm"
    Model, config = official.model_config(arch, c["vocab_size"], c["seq_len"],
                                          c["num_puzzle_identifiers"])
    return official.load(Model(config), g["state_dict"], f"golden {name}")


def q_halt_of(q: torch.Tensor) -> torch.Tensor:
    return q if q.dim() == 1 else q[:, 0]  # TRM returns q_halt (B,); HRM (halt, continue) (B, 2)


def assert_close(actual, expected, what):
    scale = expected.abs().max().clamp_min(1e-12)
    err = ((actual - expected).abs().max() / scale).item()
    assert err < RTOL, f"{what}: max error {err:.2e} relative to max |value| (tolerance {RTOL})"


@pytest.mark.parametrize("name", MODELS)
def test_eval_logits_match_official(name):
    g = golden(name)
    model = model_from_golden(name, g).eval()
    B = g["inputs"].shape[0]
    state = model.initial_state(B)
    with torch.no_grad():
        for step in range(g["eval_logits"].shape[0]):
            state, logits, q = model(state, g["inputs"], g["puzzle_identifiers"])
            assert_close(logits, g["eval_logits"][step], f"{name} logits at step {step + 1}")
            assert_close(q_halt_of(q), g["eval_q_halt"][step], f"{name} q_halt, step {step + 1}")
            if "eval_q_continue" in g and name.startswith("hrm"):
                assert_close(q[:, 1], g["eval_q_continue"][step], f"{name} q_continue, {step + 1}")


@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_official(name):
    g = golden(name)
    model = model_from_golden(name, g).train()
    B = g["inputs"].shape[0]
    with torch.no_grad():
        state, _, _ = model(model.initial_state(B), g["inputs"], g["puzzle_identifiers"])
    _, logits, q = model(state, g["inputs"], g["puzzle_identifiers"])
    probe = (logits * g["probe_R"]).sum() + (q_halt_of(q) * g["probe_r"]).sum()
    probe.backward()
    ours = {k: p.grad for k, p in model.named_parameters()}
    expected_grads = MODELS[name].official_state_dict(g["grads"])
    assert len(expected_grads) == len(ours) - 1  # all but the puzzle embedding, checked below
    for key, expected in expected_grads.items():
        assert_close(ours[key], expected, f"{name} grad of {key}")
    # the official code keeps one embedding row per sample; its optimiser sums them per puzzle id
    assert_close(ours["puzzle_emb"][0], g["puzzle_emb_grad"].sum(0), f"{name} puzzle-emb grad")


def test_hrm_q_learning_target_matches_official():
    """One training call from the initial carry: Q logits, then the continue target that the
    official ACT wrapper builds from one extra no-grad segment."""
    g = golden("hrm_att")
    model = model_from_golden("hrm_att", g).train()
    B = g["inputs"].shape[0]
    state, _, q = model(model.initial_state(B), g["inputs"], g["puzzle_identifiers"])
    assert_close(q[:, 0], g["train_q_halt"], "train q_halt")
    assert_close(q[:, 1], g["train_q_continue"], "train q_continue")
    steps = torch.ones(B, dtype=torch.long)  # one segment taken; halt_max_steps is 4
    target = model.continue_target(state, g["inputs"], g["puzzle_identifiers"], steps)
    assert_close(target, g["target_q_continue"], "Q-learning continue target")
