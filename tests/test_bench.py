"""--bench and what a run costs on this machine (lib/bench.py): the probed matmul peak, the step's
share of it, the Q-learning target's own time, the one line a long run prints before it starts,
and the heartbeat of a slow first step (lib/report.py)."""

import io
import itertools
import math
import re
import time
import types

import pytest
import torch

from lib import bench, report
import train

TINY = ["--task", "sudoku4", "--hidden", "32", "--heads", "2", "--batch-size", "16",
        "--prefix-len", "2", "--eval-limit", "32", "--eval-batch-size", "32", "--log-every", "1",
        "--threads", "1"]


def clock(times: list):
    """A stand-in for time.perf_counter that returns `times` one after the other."""
    values = iter(times)
    return types.SimpleNamespace(perf_counter=lambda: next(values))


def counting_clock(tick: float):
    """A stand-in for time.perf_counter that moves on by `tick` seconds at every reading."""
    readings = itertools.count(tick, tick)
    return types.SimpleNamespace(perf_counter=lambda: next(readings))


def recorded_flops(monkeypatch) -> list:
    """bench.flops_per_step as it is, each count it returns also appended to the list."""
    counts, count = [], bench.flops_per_step

    def recording(model, batch_size):
        counts.append(count(model, batch_size))
        return counts[-1]
    monkeypatch.setattr(bench, "flops_per_step", recording)
    return counts


def printed(capsys, start: str) -> list:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(start)]


# -----------------------------------------------------------------------------
# the matmul peak and --bench


def test_the_matmul_peak_is_2n3_over_the_fastest_timed_product(monkeypatch):
    # the products take 5 s (the warm-up, not counted), then 0.2, 0.1 and 0.3 s: half a second
    # of timed products is enough
    monkeypatch.setattr(bench, "time", clock([0, 5, 5, 5.2, 5.2, 5.3, 5.3, 5.6]))
    n = 64
    peak = bench.matmul_peak(torch.device("cpu"), "fp32", lambda: None, n)
    assert peak == pytest.approx(2 * n ** 3 / 0.1)


def test_the_matmul_peak_of_this_cpu_is_a_positive_finite_speed():
    peak = bench.matmul_peak(torch.device("cpu"), "fp32", lambda: None, 256)
    assert math.isfinite(peak) and peak > 1e8  # any CPU does a 256 x 256 matmul at 0.1 GFLOP/s


def test_bench_prints_the_steps_share_of_the_matmul_peak(tmp_path, capsys, monkeypatch):
    # every reading of the clock is 0.1 s after the last: the 2 timed steps take 0.1 s together
    monkeypatch.setattr(bench, "time", counting_clock(0.1))
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 3e9)
    counts = recorded_flops(monkeypatch)
    train.main(TINY + ["--bench", "2", "--out", str(tmp_path)])
    lines = printed(capsys, "bench |")
    achieved = counts[-1] / 0.05  # FLOP/s: the step's FLOPs over 0.1 s / 2 steps
    assert "| 50.0 ms/step |" in lines[0]
    assert (f", {achieved / 1e9:.3g} GFLOP/s: {achieved / 3e9:.0%} of the fp32 matmul peak of this "
            f"CPU's 1 thread (3 GFLOP/s), MFU n/a |") in lines[0]
    assert not any(line.startswith("bench | Q target") for line in lines)  # TRM: no Q-learning


@pytest.mark.parametrize("argv", [["--model", "hrm"], ["--model", "trm", "--act-continue"]])
def test_bench_times_the_q_learning_targets_extra_segment(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 3e9)
    train.main(TINY + argv + ["--bench", "2", "--out", str(tmp_path)])
    lines = printed(capsys, "bench |")
    step_ms = float(lines[0].split("|")[4].split()[0])
    q = next(line for line in lines if line.startswith("bench | Q target"))
    q_ms, share = float(q.split(": ")[1].split()[0]), int(q.split(", ")[-1].split("%")[0])
    # one forward segment without gradient, against a step of forward, backward and its own
    # target: more than nothing, less than the step
    assert 0 < q_ms < step_ms and 0 < share < 100
    assert abs(share - 100 * q_ms / step_ms) <= 1  # the share is of the step's time


def test_the_q_target_is_timed_where_the_step_calls_it(tmp_path, capsys, monkeypatch):
    """continue_target is timed inside 2 more optimiser steps, as supervision_step calls it on
    the batch: a target 0.2 s slower costs each step 0.2 s more."""
    from hrm import HRM
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 3e9)
    seen, original = [], HRM.continue_target

    def slow(model, state, inputs, puzzle_ids, steps):
        seen.append(tuple(inputs.shape))
        time.sleep(0.2)
        return original(model, state, inputs, puzzle_ids, steps)
    monkeypatch.setattr(HRM, "continue_target", slow)
    train.main(TINY + ["--model", "hrm", "--bench", "2", "--out", str(tmp_path)])
    q = printed(capsys, "bench | Q target")[0]
    assert len(seen) == 3 + 2 + 2 and set(seen) == {(16, 16)}  # warm-up, timed, Q-timed steps
    assert 200 <= float(q.split(": ")[1].split()[0]) < 1000  # ms per step


# -----------------------------------------------------------------------------
# what a run costs here, said before it starts


@pytest.mark.parametrize("model,steps", [("trm", 65100), ("hrm", 26040)])
def test_a_paper_recipe_on_a_cpu_says_what_it_costs_before_it_starts(tmp_path, paper_sudoku,
                                                                      capsys, monkeypatch, model,
                                                                      steps):
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 100e9)
    counts = recorded_flops(monkeypatch)
    train.main(paper_sudoku + ["--model", model, "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    cost = [line for line in out if line.startswith("cost here")]
    step_s = counts[0] / (bench.EFFICIENCY * 100e9)  # at a share of the probed 100 GFLOP/s
    banner = next(i for i, line in enumerate(out) if line.startswith("task sudoku |"))
    assert len(cost) == 1 and out.index(cost[0]) < banner  # said before the data is loaded
    assert cost[0] == (
        f"cost here | {model} ({'mlp' if model == 'trm' else 'att'}) on sudoku, batch 768: "
        f"{counts[0] / 1e12:.3g} TFLOP per step; a matmul runs at 100 GFLOP/s on this CPU's "
        f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() > 1)}, and at "
        f"{bench.EFFICIENCY:.0%} of that one step takes about {report.fmt_time(step_s)}, the run "
        f"({steps:,} steps) about {report.fmt_duration(steps * step_s)} | the same in minutes on "
        f"this machine: --task sudoku6")
    assert cost[0] + "\n" in (tmp_path / "out" / "log.txt").read_text()


def test_minutes_and_bench_change_what_the_cost_counts(paper_sudoku, capsys, monkeypatch):
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 100e9)
    counts = recorded_flops(monkeypatch)
    argv = paper_sudoku + ["--dry-run"]
    train.main(argv + ["--minutes", "30"])
    step_s = counts[0] / (bench.EFFICIENCY * 100e9)  # TRM-MLP: minutes a step here
    assert printed(capsys, "cost here")[0].endswith(
        f"(65,100 steps) about {report.fmt_duration(65100 * step_s)}, but --minutes 30 stops it "
        f"after about {int(1800 / step_s)} steps | the same in minutes on this machine: "
        f"--task sudoku6")
    train.main(argv + ["--bench", "5"])
    assert f"--bench 5 with its 3 warm-up steps (8 steps) about {report.fmt_time(8 * step_s)} " \
        f"| the same" in printed(capsys, "cost here")[0]
    train.main(argv + ["--minutes", "1"])  # not even one step: the first runs all the same
    assert "but --minutes 1 stops it after its first step |" in printed(capsys, "cost here")[0]


def test_a_resumed_run_counts_the_steps_it_has_left(tmp_path, capsys, monkeypatch):
    train.main(TINY + ["--steps", "1", "--eval-every", "1", "--out", str(tmp_path)])
    monkeypatch.setattr(bench, "SLOWEST_FLOPS", 1e6)  # a device this slow: every step is long
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 1e6)
    train.main(["--resume", str(tmp_path / "ckpt.pt"), "--steps", "5", "--dry-run"])
    assert ", the steps left (4 steps) about " in printed(capsys, "cost here")[0]


def test_a_short_run_says_nothing_and_is_not_probed(tmp_path, capsys, monkeypatch):
    def probe(*args):
        raise AssertionError("a run that is short at any speed needs no probe")
    monkeypatch.setattr(bench, "matmul_peak", probe)
    train.main(TINY + ["--dry-run", "--out", str(tmp_path)])
    assert not printed(capsys, "cost here")


def test_a_long_run_starts_with_its_heartbeat(tmp_path, capsys, monkeypatch):
    """On a device this slow (1 MFLOP/s) even the tiny model's step is long: the run says so, and
    trains with the heartbeat on, projected at the step's FLOPs over EFFICIENCY of that speed."""
    monkeypatch.setattr(bench, "SLOWEST_FLOPS", 1e6)
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 1e6)
    counts, beats, heartbeat = recorded_flops(monkeypatch), [], report.heartbeat

    def recording(run, step_s):
        beats.append(step_s)
        return heartbeat(run, step_s)
    monkeypatch.setattr(train, "heartbeat", recording)
    train.main(TINY + ["--steps", "1", "--eval-every", "1", "--out", str(tmp_path)])
    assert printed(capsys, "cost here") and beats == [counts[0] / (bench.EFFICIENCY * 1e6)]


def test_the_heartbeat_beats_until_the_first_step_is_done(capsys):
    run = types.SimpleNamespace(step=41)  # a resumed run: its next step is 42
    with report.heartbeat(run, step_s=7200, first=0.05):
        time.sleep(0.5)  # beats after 0.05, 0.1, 0.2 and 0.4 s
        beats = capsys.readouterr().out.splitlines()
        run.step += 1
        time.sleep(0.9)  # the next beat, at 0.8 s, sees the step done and stops
    assert 1 <= len(beats) <= 4 and not capsys.readouterr().out
    assert beats[0] == "step 42 running | 0m00s so far of about 2h00m"



# -----------------------------------------------------------------------------
# what a micro-batch needs in memory, told before the first step of a long run

def tiny_run(out, *flags):
    cfg = train.resolve_config(TINY + list(flags) + ["--out", str(out)])
    device, autocast = train.setup_device(cfg)
    return train.build_run(cfg, device, autocast, *train.load_data(cfg, io.StringIO()),
                           io.StringIO())


def test_the_saved_bytes_are_what_the_backward_keeps_per_slot(tmp_path):
    """Each slot adds the same, more when more net calls back-propagate, and measuring leaves the
    run as it was: its random state, its train mode, its carry."""
    run = tiny_run(tmp_path / "a", "--T", "2", "--n", "2")
    rng, carry = torch.get_rng_state(), {k: v for k, v in run.carry.items()}
    saved = [bench.saved_bytes(run, train.supervision_step, k) for k in (2, 3, 4)]
    assert torch.equal(torch.get_rng_state(), rng) and run.model.training
    assert all(run.carry[k] is v for k, v in carry.items())
    per_slot = saved[1] - saved[0]  # the loss keeps a few bytes per labelled cell: puzzles differ
    assert per_slot > 0 and saved[2] - saved[1] == pytest.approx(per_slot, rel=0.03)
    # back-propagating through all T(n+1) = 6 net calls, not the last n+1 = 3, keeps about twice
    # as much per slot
    full = tiny_run(tmp_path / "b", "--T", "2", "--n", "2", "--grad-window", "6")
    full_per_slot = bench.saved_bytes(full, train.supervision_step, 3) - \
        bench.saved_bytes(full, train.supervision_step, 2)
    assert full_per_slot / per_slot == pytest.approx(2, rel=0.1)


def test_a_micro_batch_too_big_for_the_memory_is_refused_with_the_grad_accum_that_fits(
        paper_sudoku, monkeypatch):
    """On a machine with 4 GiB the paper's Sudoku recipe (768 slots in one micro-batch) is refused
    before its first step, and the line names the fewest micro-batches that fit."""
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 100e9)  # a long run
    probes = train.device_probes
    monkeypatch.setattr(train, "device_probes",
                        lambda device: {**probes(device), "total": (4 * 2**30, "this machine's")})

    def trained(*args):
        raise AssertionError("the run started")
    monkeypatch.setattr(train, "train_loop", trained)
    with pytest.raises(SystemExit) as stop:
        train.main(paper_sudoku)
    found = re.fullmatch(r"train.py: error: one micro-batch of 768 slots keeps at least ([\d.]+) "
                         r"GiB for its backward \(([\d,]+) MiB per slot, measured\), more "
                         r"than this machine's 4 GiB: run with --grad-accum (\d+) \((\d+) slots "
                         r"per micro-batch; the same training, in smaller pieces\)",
                         str(stop.value))
    per_slot, accum, slots = float(found[2]), int(found[3]), int(found[4])
    assert float(found[1]) == pytest.approx(768 * per_slot / 1024, rel=0.01)
    assert 768 * per_slot > 4096  # what it keeps is more than the memory
    assert slots == 768 // accum
    budget = 0.8 * 4096 / bench.PEAK_OVER_SAVED  # MiB of saved tensors a micro-batch may keep
    fewer = max(a for a in range(1, accum) if 768 % a == 0)  # the next larger micro-batch
    assert slots * per_slot <= budget * 1.01 and 768 // fewer * per_slot > budget * 0.99


def test_a_model_whose_one_slot_does_not_fit_is_refused_with_no_grad_accum(tmp_path,
                                                                           monkeypatch):
    """With two slots (measured from one to two) and memory for none, no --grad-accum helps."""
    monkeypatch.setattr(bench, "SLOWEST_FLOPS", 1e6)  # a device this slow: the run is long
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype, sync, n: 1e6)
    probes = train.device_probes
    monkeypatch.setattr(train, "device_probes",
                        lambda device: {**probes(device), "total": (2**20, "this machine's")})
    with pytest.raises(SystemExit) as stop:
        train.main(TINY + ["--batch-size", "2", "--steps", "1", "--out", str(tmp_path)])
    assert str(stop.value).startswith("train.py: error: one micro-batch of 2 slots keeps at least")
    assert str(stop.value).endswith("more than this machine's 0 GiB: one slot alone does not fit: "
                                    "use a smaller model or a machine with more memory")
