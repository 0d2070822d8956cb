"""Test-time compute (lib/scaling.py): trajectories, noise, the selection rules, their compute."""
import pytest
import torch

import data
import train
from hrm import HRM, HRMConfig
from lib import config, evaluate, scaling
from trm import TRM, TRMConfig

CFG = dict(device="cpu", eval_limit=0, eval_batch_size=4, seed=0)


def tiny(Model, Config):
    torch.manual_seed(0)
    recursion = dict(n=2, T=2, N_sup=3) if Model is TRM else dict(N=2, T=2, M_max=3)
    return Model(Config(vocab_size=6, seq_len=8, hidden_size=16, num_heads=2, num_layers=1,
                        puzzle_emb_len=2, **recursion))


def puzzles(n=6):
    torch.manual_seed(1)
    x, y = (torch.randint(1, 6, (n, 8), dtype=torch.uint8) for _ in range(2))
    return data.PuzzleSet("t", "test", x, y, 6, (2, 4), "sudoku", False, "", {})


@pytest.mark.parametrize("Model,Config", [(TRM, TRMConfig), (HRM, HRMConfig)])
def test_without_noise_every_trajectory_is_the_deterministic_run(Model, Config):
    model, test = tiny(Model, Config), puzzles()
    one = evaluate.run_on_test(model, test, CFG, 5)
    many = evaluate.run_on_test(model, test, CFG, 5, K=3)
    for key in ("exact", "halt", "conf", "residual"):
        assert torch.equal(many[key], one[key].expand_as(many[key])), key
    assert torch.equal(many["answer"], one["answer"].expand_as(many["answer"]))
    # and K = 1 is what training's evaluation reports (it runs the trained 3 steps)
    result = evaluate.evaluate(model, test, CFG)
    assert result["exact_by_step"] == [round(a, 4) for a in one["exact"][:, 0, :3].mean(0).tolist()]


def test_noise_makes_trajectories_differ_and_repeats_with_the_seed():
    model, test = tiny(TRM, TRMConfig), puzzles()
    a = evaluate.run_on_test(model, test, CFG, 3, K=4, noise=0.5)
    b = evaluate.run_on_test(model, test, CFG, 3, K=4, noise=0.5)
    assert all(torch.equal(a[k], b[k]) for k in ("exact", "conf", "residual"))
    assert (a["residual"].std(1) > 0).all()  # every puzzle's trajectories went different ways
    c = evaluate.run_on_test(model, test, {**CFG, "seed": 1}, 3, K=4, noise=0.5)
    assert not torch.equal(a["residual"], c["residual"])


@pytest.mark.parametrize("Model,Config", [(TRM, TRMConfig), (HRM, HRMConfig)])
def test_kept_answers_are_those_solve_gives_and_those_fingerprinted(Model, Config):
    model, test = tiny(Model, Config), puzzles()
    run = evaluate.run_on_test(model, test, CFG, 4, K=3, noise=0.5, keep_answers=True)
    assert run["answers"].shape == (6, 3, 4, 8)
    assert torch.equal(evaluate.fingerprint(run["answers"]), run["answer"])
    assert torch.equal((run["answers"] == test.labels[:, None, None]).all(-1).float(),
                       run["exact"])
    plain = evaluate.run_on_test(model, test, CFG, 4, keep_answers=True)
    solved = evaluate.solve(model, test.inputs, 4)  # (steps, B, ...)
    assert torch.equal(plain["answers"][:, 0], solved["answers"].transpose(0, 1).to(torch.uint8))
    assert torch.equal(plain["halt"][:, 0], solved["halt"].T.float())
    assert torch.equal(plain["conf"][:, 0], evaluate.confidence(
        solved["q"].flatten(0, 1)).view(4, 6).T.float())


def test_a_trajectorys_noise_does_not_depend_on_the_batch_or_on_K():
    """The README's test-time command must reproduce its table on any --eval-batch-size, number
    of ranks or list of K: trajectory j of puzzle p gets the same noise in every setting."""
    model, test = tiny(TRM, TRMConfig), puzzles()
    base = evaluate.run_on_test(model, test, CFG, 3, K=4, noise=0.5)
    for cfg, K in (({**CFG, "eval_batch_size": 1}, 4), ({**CFG, "eval_batch_size": 5}, 4),
                   (CFG, 2), ({**CFG, "eval_batch_size": 3}, 7)):
        other = evaluate.run_on_test(model, test, cfg, 3, K=K, noise=0.5)
        k = min(K, 4)  # the first k trajectories are the same ones
        for key in ("exact", "conf", "residual", "answer"):
            torch.testing.assert_close(other[key][:, :k], base[key][:, :k], rtol=1e-5, atol=1e-6,
                                       msg=f"{key}, batch {cfg['eval_batch_size']}, K={K}")


def test_trajectory_noise_is_standard_normal_and_independent():
    puzzle = torch.arange(400).repeat_interleave(5)  # 400 puzzles x 5 trajectories
    trajectory = torch.arange(5).repeat(400)
    eps = evaluate.trajectory_noise(0, puzzle, trajectory, 0, (3, 64))  # (2000, 3, 64)
    assert eps.shape == (2000, 3, 64) and eps.dtype == torch.float32
    flat = eps.flatten().double()
    assert abs(flat.mean().item()) < 0.005 and flat.std().item() == pytest.approx(1, abs=0.005)
    # the normal's quantiles: 15.87% below -1, 2.28% below -2, and symmetric
    for x, share in ((-1, 0.1587), (-2, 0.0228), (1, 0.8413)):
        assert (flat < x).double().mean().item() == pytest.approx(share, abs=0.002)
    # neighbouring puzzles, trajectories, steps and seeds are uncorrelated
    rows = eps.flatten(1)
    others = (rows[5:], rows[:-5]), (rows[1:], rows[:-1])  # puzzle p+1, trajectory j+1
    step1 = evaluate.trajectory_noise(0, puzzle, trajectory, 1, (3, 64)).flatten(1)
    seed1 = evaluate.trajectory_noise(1, puzzle, trajectory, 0, (3, 64)).flatten(1)
    for a, b in (*others, (rows, step1), (rows, seed1)):
        corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert abs(corr.item()) < 0.005
    again = evaluate.trajectory_noise(0, puzzle[7:9], trajectory[7:9], 0, (3, 64))
    assert torch.equal(again, eps[7:9])  # a row's noise is a function of its own key alone


def test_noise_is_relative_to_the_latent():
    z = torch.randn(2000, 3, 64) * 7
    _, noisy = evaluate.perturb((z, z), 0.1, torch.randn(z.shape))
    ratio = (noisy - z).pow(2).mean().sqrt() / z.pow(2).mean().sqrt()
    assert ratio.item() == pytest.approx(0.1, rel=0.02)


def run_of(exact, halt, conf, residual, answer):
    """A hand-made run of 1 puzzle, K trajectories, 3 steps (lists indexed [trajectory][step];
    answer: which answer each gives, as a number)."""
    t = lambda v: torch.tensor([v], dtype=torch.float)  # (1, K, 3)
    return dict(exact=t(exact), halt=t(halt), conf=t(conf), residual=t(residual),
                answer=torch.tensor([answer]))


# trajectory 0 halts at step 2 (then wrong) and is the most confident at step 3 (wrong);
# trajectory 1 halts at step 3 right; trajectory 2 is right at 3 with the smallest residual;
# at step 3 trajectories 1 and 2 give the same (right) answer, before that all differ
RUN = run_of(exact=[[0, 0, 0], [0, 1, 1], [1, 0, 1]],
             halt=[[0, 1, 1], [0, 0, 1], [0, 0, 0]],
             conf=[[-1, 2, 5], [-2, -1, 3], [-3, -2, -1]],
             residual=[[.5, .2, .3], [.6, .4, .2], [.7, .3, .1]],
             answer=[[1, 2, 3], [4, 5, 6], [7, 8, 6]])


@pytest.mark.parametrize("rule, k, right, ran", [
    ("q", 3, False, 3),  # trajectory 0, the most confident at step 3
    ("q", 1, False, 1),  # trajectory 0 at step 1 (conf -1)
    ("first", 3, False, 2),  # trajectory 0 halts first, at step 2, with its step-2 answer
    ("first", 1, False, 1),  # nobody halts by step 1: the most confident, at step 1
    ("residual", 3, True, 3),  # trajectory 2
    ("residual", 2, False, 2),  # trajectory 0 (0.2), wrong at step 2
    ("vote", 3, True, 3),  # two of three give the right answer
    ("vote", 2, False, 2),  # three different answers: the most confident, trajectory 0
    ("oracle", 3, True, 3), ("oracle", 1, True, 1),  # trajectory 2 is right at step 1
])
def test_each_rule_picks_what_it_says(rule, k, right, ran):
    got_right, got_ran = scaling.select(RUN, rule, k)
    assert got_right.tolist() == [right] and got_ran.tolist() == [ran]


def test_first_to_halt_breaks_ties_by_confidence():
    run = run_of(exact=[[0, 0], [0, 1]], halt=[[0, 1], [0, 1]], conf=[[0, 1], [0, 2]],
                 residual=[[1, 1], [1, 1]], answer=[[0, 0], [1, 1]])
    assert scaling.select(run, "first", 2)[0].tolist() == [True]


def test_majority_counts_equal_answers_and_breaks_ties_by_confidence():
    answers = torch.tensor([[[1, 2], [3, 4], [1, 2], [3, 4], [5, 5]]])  # (1, 5, 2)
    prints = evaluate.fingerprint(answers)  # (1, 5)
    assert prints[0, 0] == prints[0, 2] and len(set(prints[0].tolist())) == 3
    assert evaluate.majority(prints, torch.tensor([[0., 1, 0, 0, 9]])).item() == 1  # 3,4 more sure
    assert evaluate.majority(prints, torch.tensor([[1., 0, 0, 0, 9]])).item() == 0
    assert evaluate.majority(prints[:, :3], torch.zeros(1, 3)).item() == 0  # 1,2 twice


class Scripted(torch.nn.Module):
    """Puzzle i is answered right from step right_at[i] on, and its head says halt (q = +1, else
    -1) from step halt_at[i] on; the latent halves every step."""
    right_at, halt_at = torch.tensor([1, 3, 5]), torch.tensor([2, 2, 10])

    def initial_state(self, B):
        return torch.zeros(B), torch.ones(B, 1, 1)

    def forward(self, state, inputs, ids):
        step, puzzle = state[0] + 1, inputs[:, 0].long()
        right = (step >= self.right_at[puzzle])[:, None, None]
        logits = torch.where(right, torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
        q = torch.where(step >= self.halt_at[puzzle], 1.0, -1.0)
        return (step, state[1] / 2), logits.expand(len(step), 4, 2), q

    def wants_to_halt(self, q):
        return q > 0

    def net_calls(self):
        return 5


THREE = data.PuzzleSet("t", "test", torch.arange(3, dtype=torch.uint8)[:, None].repeat(1, 4),
                       torch.ones(3, 4, dtype=torch.uint8), 2, (2, 2), "sudoku", False, "", {})


def test_adaptive_halting_returns_the_answer_at_the_first_halt():
    table = scaling.test_time_scaling(Scripted(), THREE, {**CFG, "eval_batch_size": 2}, [4, 1, 2])
    got = {(r["mode"], r["steps"]): (round(r["exact"], 4), round(r["mean_steps"], 4))
           for r in table}
    assert got[("fixed", 1)] == (round(1 / 3, 4), 1) and got[("fixed", 4)] == (round(2 / 3, 4), 4)
    # at most 4 steps: puzzles 0 and 1 stop at step 2 (right only puzzle 0), puzzle 2 at step 4
    assert got[("adaptive", 4)] == (round(1 / 3, 4), round(8 / 3, 4))
    assert got[("adaptive", 1)] == (round(1 / 3, 4), 1)
    assert [r["net_calls"] for r in table if r["mode"] == "fixed"] == [5, 10, 20]


def test_every_row_counts_its_net_calls():
    test = THREE
    said = []
    table = scaling.test_time_scaling(Scripted(), test, {**CFG, "eval_batch_size": 2}, [1, 4],
                                      trajectories=[1, 3], say=said.append)
    rows = {(r["mode"], r["steps"], r["trajectories"]): r for r in table}
    # one line per pass, its speed in puzzles and in trajectory-steps (3 puzzles, 4 steps)
    assert [line.split(" in ")[0] for line in said] == [
        "pass | 3 puzzles x 1 trajectory x 4 steps", "pass | 3 puzzles x 3 trajectories x 4 steps"]
    for line, K in zip(said, (1, 3)):
        puzzles_s, steps_s = (float(part.split()[0].replace(",", ""))
                              for part in line.split(" | ")[2:])
        assert steps_s == pytest.approx(puzzles_s * K * 4, rel=0.01, abs=1)
    for k in (1, 4):
        assert rows["fixed", k, 1]["net_calls"] == k * 5
        assert rows["q", k, 3]["net_calls"] == k * 3 * 5 and rows["oracle", k, 3]["net_calls"] == \
            k * 3 * 5
    # with 4 steps, puzzles 0 and 1 halt at step 2 and puzzle 2 runs all 4: all 3 trajectories
    # stop at the first halt
    assert rows["first", 4, 3]["mean_steps"] == pytest.approx(8 / 3)
    assert rows["first", 4, 3]["net_calls"] == pytest.approx(8 / 3 * 3 * 5)
    assert rows["adaptive", 4, 1]["net_calls"] == pytest.approx(8 / 3 * 5)
    # without noise the trajectories agree: every rule gives the single trajectory's answer
    for rule in (*scaling.SELECTIONS, "oracle"):
        assert rows[rule, 4, 3]["exact"] == rows["adaptive" if rule == "first" else "fixed", 4,
                                                 1]["exact"]
    # the latent halves every step: relative change 0.5 at every step
    assert [r["residual"] for r in table if r["mode"] == "residual_by_step"] == [0.5] * 4


class LatentMap(torch.nn.Module):
    """A model whose step sends the latent it is given to move(latent); its answers and its head
    never change."""

    def __init__(self, move):
        super().__init__()
        self.move = move

    def initial_state(self, B):
        return None, torch.ones(B, 2, 8)

    def forward(self, state, inputs, ids):
        B = len(inputs)
        return (None, self.move(state[1])), torch.zeros(B, 4, 2), torch.zeros(B)

    def wants_to_halt(self, q):
        return q > 0


@pytest.mark.parametrize("noise", [0.0, 0.3, 1.0])
def test_the_residual_of_a_model_at_its_fixed_point_is_0_whatever_the_noise(noise):
    """residual is how far the latent moved between the model's last two outputs. A model that
    sends every latent to one point has stopped moving after its first step, however much noise
    it was given (measured from the noised latent, it moved by the whole noise)."""
    point = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    run = evaluate.run_on_test(LatentMap(lambda z: point.expand_as(z)), THREE, CFG, 4, K=3,
                               noise=noise)
    assert (run["residual"][:, :, 0] > 0).all()  # step 1 moves the initial latent to the point
    assert torch.equal(run["residual"][:, :, 1:], torch.zeros(3, 3, 3))


def test_the_residual_of_a_model_that_keeps_the_noise_is_the_noise():
    """A model that leaves the latent where it is given keeps every noise, so its latent moves by
    the noise at every step: the residual sees that (measured from the noised latent, it was 0)."""
    model = LatentMap(lambda z: z)
    run = evaluate.run_on_test(model, THREE, CFG, 3, K=2, noise=0.5)
    puzzle, trajectory = torch.arange(3).repeat_interleave(2), torch.arange(2).repeat(3)
    z = model.initial_state(6)[1]
    for k in range(3):
        eps = evaluate.trajectory_noise(0, puzzle, trajectory, k, z.shape[1:])
        _, noised = evaluate.perturb((None, z), 0.5, eps)
        torch.testing.assert_close(run["residual"][:, :, k].flatten(),
                                   evaluate.relative_change(noised, z))
        z = noised


@pytest.mark.parametrize("Model,Config", [(TRM, TRMConfig), (HRM, HRMConfig)])
def test_without_noise_the_residual_is_the_plain_change_of_the_latent(Model, Config):
    model, test = tiny(Model, Config), puzzles()
    run = evaluate.run_on_test(model, test, CFG, 4)
    model.eval()
    state, ids = model.initial_state(6), torch.zeros(6, dtype=torch.long)
    with torch.no_grad():
        for k in range(4):
            new = model(state, test.inputs, ids)[0]
            torch.testing.assert_close(run["residual"][:, 0, k],
                                       evaluate.relative_change(new[1], state[1]))
            state = new


@pytest.mark.parametrize("flags, message", [
    (["--trajectories", "0"], "--trajectories '0' must be counts of at least 1"),
    (["--trajectories", "2,x"], "--trajectories '2,x' must be counts of at least 1"),
    (["--noise", "-0.1"], "--noise -0.1 must be a finite number of at least 0"),
    (["--select", "best"], "--select 'best' is not a selection rule; choose one of q, first"),
])
def test_a_bad_breadth_flag_is_one_line_before_any_work(tmp_path, flags, message):
    ckpt = tmp_path / "ckpt.pt"
    torch.save(dict(config=config.resolve_config(["--task", "sudoku4"]), model={}, step=0,
                    carry={}), ckpt)
    with pytest.raises(SystemExit) as e:
        train.main(["--eval-only", "--resume", str(ckpt), *flags])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_breadth_needs_a_trained_model():
    with pytest.raises(SystemExit) as e:
        config.resolve_config(["--task", "sudoku4", "--trajectories", "4"])
    assert "use with --eval-only --resume CKPT" in str(e.value)
