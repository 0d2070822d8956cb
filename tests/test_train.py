"""train.py: the loss, the optimisers, the data order, resume, NaN handling, and that it learns."""

import json
import math
import os

import pytest
import torch

import data
import train

TINY = ["--task", "sudoku4", "--hidden", "32", "--heads", "2", "--batch-size", "16",
        "--prefix-len", "2", "--eval-limit", "32", "--eval-batch-size", "32", "--log-every", "1",
        "--threads", "1"]


def test_stablemax_cross_entropy_by_hand():
    logits = torch.tensor([[[0.0, 1.0, -1.0], [2.0, -3.0, 0.5]]])  # (B=1, S=2, V=3)
    labels = torch.tensor([[1, 2]])
    # s(v) = v + 1 for v >= 0, 1 / (1 - v) for v < 0
    s0, s1 = [1.0, 2.0, 0.5], [3.0, 0.25, 1.5]
    expected = [-math.log(s0[1] / sum(s0)), -math.log(s1[2] / sum(s1))]
    loss = train.stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float64
    assert torch.allclose(loss, torch.tensor([expected], dtype=torch.float64))


def test_adam_atan2_matches_its_formula():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    ref, m, v = p.detach().clone(), torch.zeros(5), torch.zeros(5)
    opt = train.AdamATan2([p], lr=0.1, betas=(0.9, 0.95), weight_decay=0.5)
    for t in range(1, 4):
        g = torch.randn(5)
        p.grad = g.clone()
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.95 * v + 0.05 * g * g
        ref = ref * (1 - 0.1 * 0.5)
        ref = ref - 0.1 / (1 - 0.9 ** t) * torch.atan2(m, (v / (1 - 0.95 ** t)).sqrt())
        assert torch.allclose(p.detach(), ref, atol=1e-6)


def test_sign_sgd_touches_only_rows_in_the_batch():
    w = torch.nn.Parameter(torch.ones(3, 4))
    w.grad = torch.tensor([[0.5, -2.0, 0.0, 1.0], [0.0] * 4, [-1.0, 0.0, 0.0, 0.0]])
    train.SignSGD([w], lr=0.1, weight_decay=1.0).step()
    assert torch.allclose(w[0], torch.tensor([0.8, 1.0, 0.9, 0.8]))  # 1 * 0.9 - 0.1 * sign
    assert torch.equal(w[1], torch.ones(4))  # puzzle id absent from the batch: untouched
    assert torch.allclose(w[2], torch.tensor([1.0, 0.9, 0.9, 0.9]))


def test_batches_are_epochs_of_permutations_and_repeatable():
    cfg = train.resolve_config(TINY + ["--no-augment"])
    train_set, _ = data.load_task("sudoku4")
    n = len(train_set)
    per_epoch = [train.get_batch(train_set, s, cfg)[0] for s in range(n // 16)]
    seen = {row.numpy().tobytes() for b in per_epoch for row in b}
    assert len(seen) == n // 16 * 16  # no puzzle twice within an epoch (puzzles are distinct)
    again = train.get_batch(train_set, 7, cfg)[0]
    assert torch.equal(again, per_epoch[7])  # a pure function of (seed, step): resume-safe


def run(tmp_path, name, *extra):
    out = str(tmp_path / name)
    result = train.main(TINY + ["--out", out, *extra])
    with open(os.path.join(out, "ckpt.pt"), "rb"):
        pass
    return out, result


def test_resume_continues_exactly(tmp_path):
    """A run killed after its checkpoint and resumed gives the same losses as one never stopped."""
    full, _ = run(tmp_path, "full", "--steps", "6", "--eval-every", "3")
    part, _ = run(tmp_path, "part", "--steps", "3", "--eval-every", "3")
    run(tmp_path, "part", "--steps", "6", "--eval-every", "3", "--resume", f"{part}/ckpt.pt")
    history = {name: torch.load(f"{out}/ckpt.pt", weights_only=False)["history"]
               for name, out in (("full", full), ("part", part))}
    losses = {k: [h["loss"] for h in v] for k, v in history.items()}
    assert len(losses["full"]) == len(losses["part"]) == 6
    assert losses["part"][3:] == losses["full"][3:]  # bit for bit on CPU
    assert losses["full"][3] != losses["full"][4]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out, _ = run(tmp_path, "nan", "--steps", "2", "--eval-every", "2")
    before = torch.load(f"{out}/ckpt.pt", weights_only=False)
    with pytest.raises(SystemExit) as stop:  # an absurd learning rate overflows the weights
        run(tmp_path, "nan", "--steps", "8", "--eval-every", "2", "--lr", "1e30", "--warmup", "1",
            "--resume", f"{out}/ckpt.pt")
    assert stop.value.code == 1
    after = torch.load(f"{out}/ckpt.pt", weights_only=False)
    assert after["step"] == before["step"] == 2
    assert all(torch.isfinite(v).all() for v in after["model"].values())
    assert "NaN/Inf" in open(f"{out}/log.txt").read()


def test_dry_run_prints_the_paper_parameter_count(tmp_path, capsys):
    # an official-format folder: a few generated 9x9 puzzles, repeated to the 1k the recipe samples
    import random
    rng = random.Random(0)
    rows = []
    for _ in range(4):
        puzzle, answer = data.make_sudoku(rng, 9)
        q = "".join("." if t == 1 else str(t - 1) for t in puzzle)
        rows.append(f"gen,{q},{''.join(str(t - 1) for t in answer)},0")
    for name, count in (("train.csv", 1000), ("test.csv", 8)):
        (tmp_path / name).write_text("source,question,answer,rating\n" +
                                     "\n".join(rows[i % 4] for i in range(count)) + "\n")
    train.main(["--task", "sudoku", "--data-dir", str(tmp_path), "--dry-run", "--out",
                str(tmp_path / "out"), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "params: 5028866" in printed
    assert "GENERATED" not in printed.split("config:")[0]


def test_a_tiny_model_learns_a_small_task(tmp_path):
    """The sudoku4 preset (TRM-MLP, D=64) for 250 steps, about a minute on 2 CPU cores."""
    out = str(tmp_path / "learn")
    final = train.main(["--task", "sudoku4", "--steps", "250", "--eval-every", "250",
                        "--log-every", "50", "--out", out])
    results = json.load(open(f"{out}/results.json"))
    assert results["generated"] and results["test_exact"] == final["exact"]
    assert final["puzzles"] == 1000  # the final eval uses the whole test set
    # by chance a cell is right 1/4 of the time and a whole 4x4 grid practically never
    assert final["cell"] > 0.9
    assert final["exact"] > 0.5


def test_bench_reports_speed_and_memory(tmp_path, capsys):
    train.main(TINY + ["--bench", "2", "--out", str(tmp_path)])
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("bench |")][0]
    steps_per_s = float(line.split("|")[2].split()[0])
    assert steps_per_s > 0 and "peak RSS" in line and "ms/step" in line
