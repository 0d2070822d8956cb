"""Equivalence with the official TRM implementation.

The fixtures in ../shared/golden were produced by the official code (SamsungSAILMontreal/
TinyRecursiveModels) on tiny random models; loaded with the same weights, trm.py must reproduce
their per-step eval logits, halting logits and gradients."""

from pathlib import Path

import pytest
import torch

from trm import TRM, TRMConfig, load_official, official_state_dict

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
RTOL = 1e-4


def golden(name: str) -> dict:
    path = GOLDEN / f"{name}.pt"
    if not path.exists():
        pytest.skip(f"golden fixture {path} is absent: these tests need the shared/ folder beside "
                    "the repository (../shared/golden/*.pt, made with the official code)")
    return torch.load(path, weights_only=True)


def model_from_golden(g: dict) -> TRM:
    c = g["config"]
    config = TRMConfig(vocab_size=c["vocab_size"], seq_len=c["seq_len"],
                       num_puzzle_ids=c["num_puzzle_identifiers"], hidden_size=c["hidden_size"],
                       num_heads=c["num_heads"], expansion=c["expansion"], num_layers=c["L_layers"],
                       mlp_t=c["mlp_t"], puzzle_emb_len=c["puzzle_emb_len"], n=c["L_cycles"],
                       T=c["H_cycles"], N_sup=c["halt_max_steps"],
                       halt_exploration_prob=c["halt_exploration_prob"])
    return load_official(TRM(config), g["state_dict"])


def assert_close(actual, expected, what):
    scale = expected.abs().max().clamp_min(1e-12)
    err = ((actual - expected).abs().max() / scale).item()
    assert err < RTOL, f"{what}: max error {err:.2e} relative to max |value| (tolerance {RTOL})"


@pytest.mark.parametrize("name", ["trm_att", "trm_mlp"])
def test_eval_logits_match_official(name):
    g = golden(name)
    model = model_from_golden(g).eval()
    B = g["inputs"].shape[0]
    state = model.initial_state(B)
    with torch.no_grad():
        for step in range(g["eval_logits"].shape[0]):
            state, logits, q_halt = model(state, g["inputs"], g["puzzle_identifiers"])
            assert_close(logits, g["eval_logits"][step], f"{name} logits at step {step + 1}")
            assert_close(q_halt, g["eval_q_halt"][step], f"{name} q_halt at step {step + 1}")


@pytest.mark.parametrize("name", ["trm_att", "trm_mlp"])
def test_gradients_match_official(name):
    g = golden(name)
    model = model_from_golden(g).train()
    B = g["inputs"].shape[0]
    with torch.no_grad():
        state, _, _ = model(model.initial_state(B), g["inputs"], g["puzzle_identifiers"])
    _, logits, q_halt = model(state, g["inputs"], g["puzzle_identifiers"])
    probe = (logits * g["probe_R"]).sum() + (q_halt * g["probe_r"]).sum()
    probe.backward()
    ours = {k: p.grad for k, p in model.named_parameters()}
    expected_grads = official_state_dict(g["grads"])
    assert len(expected_grads) == len(ours) - 1  # all but the puzzle embedding, checked below
    for key, expected in expected_grads.items():
        assert_close(ours[key], expected, f"{name} grad of {key}")
    # the official code keeps one embedding row per sample; its optimiser sums them per puzzle id
    assert_close(ours["puzzle_emb"][0], g["puzzle_emb_grad"].sum(0), f"{name} puzzle-emb grad")
