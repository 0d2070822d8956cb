"""A user error (a bad flag value, a device this machine lacks) stops with one line that names the
flag, the value and what it must be, before any data is loaded or anything is written."""

import errno
import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
import torch

import data
from lib import config
import train

BAD_FLAGS = [
    (["--batch-size", "0"], "--batch-size 0 must be at least 1"),
    (["--batch-size", "-1"], "--batch-size -1 must be at least 1"),
    (["--steps", "0"], "--steps 0 must be at least 1"),
    (["--steps", "-5"], "--steps -5 must be at least 1"),
    (["--eval-every", "0"], "--eval-every 0 must be at least 1"),
    (["--log-every", "0"], "--log-every 0 must be at least 1"),
    (["--grad-accum", "0"], "--grad-accum 0 must be at least 1"),
    (["--batch-size", "64", "--grad-accum", "5"], "--batch-size 64 must be a multiple of"),
    (["--n", "0"], "--n 0 must be at least 1"),
    (["--T", "0"], "--T 0 must be at least 1"),
    (["--N-sup", "0"], "--N-sup 0 must be at least 1"),
    (["--model", "hrm", "--M-max", "0"], "--M-max 0 must be at least 1"),
    (["--prefix-len", "0"], "--prefix-len 0 must be at least 1"),
    (["--eval-batch-size", "0"], "--eval-batch-size 0 must be at least 1"),
    (["--eval-limit", "-1"], "--eval-limit -1 must be at least 0"),
    (["--hidden", "63", "--heads", "4", "--net", "att"], "--hidden 63 must be a multiple of"),
    (["--lr", "-1"], "--lr -1.0 must be above 0"),
    (["--lr", "0"], "--lr 0.0 must be above 0"),
    (["--lr", "nan"], "--lr nan is not a finite number"),
    (["--emb-lr", "inf"], "--emb-lr inf is not a finite number"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1 must be at least 0"),
    (["--minutes", "0"], "--minutes 0.0 must be above 0"),
    (["--ema", "1.5"], "--ema 1.5 must be in [0, 1)"),
    (["--ema", "1"], "--ema 1.0 must be in [0, 1)"),
    (["--halt-explore", "2"], "--halt-explore 2.0 must be a probability"),
    (["--threads", "0"], "--threads 0 must be at least 1"),
    (["--bench", "0"], "--bench 0 must be at least 1"),
    (["--eval-steps", "0,1,2"], "--eval-steps '0,1,2' must be step counts of at least 1"),
    (["--eval-steps", "1,abc"], "--eval-steps '1,abc' must be step counts"),
    (["--eval-steps=-1,2"], "--eval-steps '-1,2' must be step counts"),
    (["--device", "tpu"], "--device 'tpu' is not one of cpu, cuda, cuda:N, mps"),
    (["--model", "hrm", "--n", "3"], "--n is not a setting of HRM"),
    (["--eval-only"], "--eval-only evaluates a checkpoint: give it with --resume CKPT"),
    (["--solve", "1...3..1..4..2.."], "--solve needs a trained model: give it with --resume"),
    (["--official", "some/repo"], "--official scores a checkpoint of the official code: use it "
                                  "with --eval-only"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line_before_any_work(tmp_path, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        train.main(["--task", "sudoku4", "--out", str(out), *argv])
    text = str(stop.value.code)
    assert text.startswith("train.py: error: ") and message in text
    assert "\n" not in text  # one line, and a non-zero exit (a str code exits with 1)
    assert not out.exists()  # nothing written: no folder, no log, no checkpoint


# the devices this machine lacks (every machine lacks some: none has both CUDA and MPS)
LACKING = [(device, message) for device, has_it, message in [
    ("cuda", torch.cuda.is_available(), "no CUDA GPU"),
    ("cuda:7", torch.cuda.device_count() > 7, "CUDA"),
    ("mps", torch.backends.mps.is_available(), "no Apple GPU")] if not has_it]


@pytest.mark.parametrize("device, message", LACKING)
def test_a_device_this_machine_lacks_is_refused_at_once(tmp_path, device, message):
    with pytest.raises(SystemExit, match=message):
        train.main(["--task", "sudoku4", "--device", device, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["under a file", "a file", "/proc"])
def test_an_unwritable_out_is_refused_before_the_data_loads(tmp_path, where):
    (tmp_path / "f").write_text("not a folder")
    out = {"under a file": tmp_path / "f" / "run", "a file": tmp_path / "f",
           "/proc": "/proc/no-such-run"}[where]
    with pytest.raises(SystemExit) as stop:
        train.main(["--task", "sudoku4", "--out", str(out)])
    assert str(stop.value.code).startswith(f"train.py: error: --out {out} cannot hold")
    assert (tmp_path / "f").read_text() == "not a folder"


def sudoku_folder(tmp_path, train_rows: int):
    header = "source,question,answer,rating\n"
    row = "x," + "." * 81 + "," + "123456789" * 9 + ",0\n"  # an answer that breaks every column
    (tmp_path / "train.csv").write_text("" if train_rows < 0 else header + row * train_rows)
    (tmp_path / "test.csv").write_text(header + row)
    return ["--task", "sudoku", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]


def test_an_empty_train_csv_says_it_has_no_rows(tmp_path):
    """An empty file (not even a header) used to be reported as having -1 rows."""
    with pytest.raises(SystemExit) as stop:
        train.main(sudoku_folder(tmp_path, -1))
    assert str(stop.value.code) == (f"train.py: error: {tmp_path / 'train.csv'} has 0 data rows, "
                                    f"need at least 1000")


def test_a_bad_csv_row_is_one_line_naming_file_and_row(tmp_path):
    with pytest.raises(SystemExit) as stop:
        train.main(sudoku_folder(tmp_path, 1000))
    text = str(stop.value.code)
    assert text.startswith(f"train.py: error: {tmp_path / 'train.csv'}, data row ")
    assert "answer is not a valid grid" in text and "\n" not in text


TINY = ["--task", "sudoku4", "--hidden", "32", "--heads", "2", "--batch-size", "16",
        "--prefix-len", "2", "--eval-limit", "16", "--eval-batch-size", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train.main(TINY + ["--out", str(out), "--steps", "1", "--eval-every", "1"])
    return out / "ckpt.pt"


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", "truncated"])
def test_resume_from_a_broken_file_names_it(tmp_path, checkpoint, content):
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(checkpoint.read_bytes()[:1000] if content == "truncated" else content)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        train.main(["--resume", str(bad), "--out", str(out)])
    assert str(stop.value.code).startswith(f"train.py: error: --resume {bad} cannot be read")
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--hidden", "64"], "--hidden 32 there, 64 now"),
    (["--model", "hrm"], "--model trm there, hrm now"),
    (["--task", "sudoku6"], "--task sudoku4 there, sudoku6 now"),
    (["--batch-size", "32"], "--batch-size 16 there, 32 now"),
    (["--seed", "1"], "--seed 0 there, 1 now"),
    (["--no-augment"], "--augment True there, False now"),
])
def test_resume_refuses_a_config_that_changes_the_training(tmp_path, checkpoint, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        train.main(["--resume", str(checkpoint), "--out", str(out), *argv])
    text = str(stop.value.code)
    assert message in text and "may change only --steps, --minutes" in text and "\n" not in text
    assert not out.exists()  # refused before any data was generated or anything written


def test_resume_takes_the_checkpoints_config_and_the_new_step_count(checkpoint):
    cfg = config.resolve_config(["--resume", str(checkpoint), "--steps", "5", "--threads", "2"])
    saved = torch.load(checkpoint, weights_only=False)["config"]
    assert (cfg["steps"], cfg["threads"]) == (5, 2)
    assert {k: cfg[k] for k in ("hidden", "batch_size", "prefix_len", "model", "task", "out")} == \
        {k: saved[k] for k in ("hidden", "batch_size", "prefix_len", "model", "task", "out")}


def test_eval_only_seed_seeds_the_noise_not_the_data(checkpoint):
    """--eval-only --seed S draws another noise sample; the generated task's puzzles, its test
    split among them, stay those the checkpoint was trained with (its own seed)."""
    cfg = config.resolve_config(["--eval-only", "--resume", str(checkpoint), "--seed", "7"])
    saved = torch.load(checkpoint, weights_only=False)["config"]
    assert cfg["seed"] == 7 and cfg["data_seed"] == saved["seed"] != 7


def test_a_second_run_into_the_same_out_is_refused_until_the_first_ends(tmp_path):
    """A run holds a lock on out/log.txt while it runs; the kernel drops it when the process ends,
    even by kill -9, so nothing stale is left."""
    import subprocess
    import sys
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(out / "log.txt")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as stop:
            train.main(TINY + ["--out", str(out), "--dry-run"])
        assert f"--out {out} is in use by another run" in str(stop.value.code)
        assert (out / "log.txt").read_text() == ""  # the refused run wrote nothing
    finally:
        holder.kill()  # SIGKILL: the holder gets no chance to clean up
        holder.wait()
    train.main(TINY + ["--out", str(out), "--dry-run"])  # the lock died with the process
    assert "params:" in (out / "log.txt").read_text()


@pytest.mark.parametrize("damage", ["truncated", "garbled", "empty"])
def test_a_corrupt_generated_cache_is_made_again(tmp_path, damage):
    good = data.load_task("sudoku4", log=lambda *a: None)  # the suite's shared cache in data/
    cached = tmp_path / "generated" / "sudoku4-seed0.npz"
    cached.parent.mkdir()
    whole = (Path("data") / "generated" / "sudoku4-seed0.npz").read_bytes()
    cached.write_bytes({"truncated": whole[:len(whole) // 2], "garbled": b"PK\x03\x04" + whole[99:],
                        "empty": b""}[damage])
    logs = []
    again = data.load_task("sudoku4", cache_dir=tmp_path, log=logs.append)
    assert any(f"the cached {cached} cannot be read" in line for line in logs)
    assert torch.equal(again[0].inputs, good[0].inputs) and torch.equal(again[1].labels,
                                                                        good[1].labels)


def test_data_hashes_and_the_fallback_reason_reach_the_log(tmp_path, monkeypatch):
    """The sha256 of each data file is in log.txt and results.json, so two runs can be compared;
    why the download failed is in log.txt, not only on the terminal."""
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.chdir(tmp_path)  # the generated stand-in goes to this test's own data/
    monkeypatch.setitem(data.TASKS["maze"], "n_train", 3)
    monkeypatch.setitem(data.TASKS["maze"], "n_test", 2)
    out = tmp_path / "out"
    train.main(["--task", "maze", "--hidden", "32", "--heads", "2", "--batch-size", "3",
                "--prefix-len", "1", "--steps", "1", "--eval-every", "1", "--threads", "1",
                "--out", str(out)])
    log = (out / "log.txt").read_text()
    assert "could not download sapientinc/maze-30x30-hard-1k" in log and "NOT the benchmark" in log
    npz = tmp_path / "data" / "generated" / "maze-seed0.npz"
    sha = hashlib.sha256(npz.read_bytes()).hexdigest()
    assert f"sha256 {sha}" in log
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["sha256"] == {"train": sha, "test": sha}


PUZZLE = "1...3..1..4..2.."  # a 4x4 Sudoku, in the CSV alphabet
ONE_TRAJECTORY = "one trajectory per puzzle is the deterministic run, with no noise to add and " \
    "none to select; add --trajectories K with K above 1 (e.g. 2,4,8), or leave"
SOLVE = "--solve runs each puzzle once, for the trained number of supervision steps, and prints " \
    "every step; test-time scaling is --eval-only without --solve: leave"


@pytest.mark.parametrize("argv, message", [
    (["--eval-only", "--noise", "0.5"], f"--noise: {ONE_TRAJECTORY} --noise out"),
    (["--eval-only", "--select", "q"], f"--select: {ONE_TRAJECTORY} --select out"),
    (["--eval-only", "--trajectories", "1", "--noise", "0.5", "--select", "vote"],
     f"--noise and --select: {ONE_TRAJECTORY} --noise and --select out"),
    (["--solve", PUZZLE, "--trajectories", "4"], f"--trajectories: {SOLVE} --trajectories out"),
    (["--solve", PUZZLE, "--noise", "0.1"], f"--noise: {SOLVE} --noise out"),
    (["--solve", PUZZLE, "--eval-steps", "4"], f"--eval-steps: {SOLVE} --eval-steps out"),
])
def test_a_scaling_flag_that_does_not_apply_is_refused(tmp_path, checkpoint, argv, message):
    """--noise and --select act on the trajectories of a K above 1, and --solve runs one
    trajectory for the trained number of steps: either was dropped without a word."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        train.main(["--resume", str(checkpoint), "--out", str(out), *argv])
    assert str(stop.value.code) == f"train.py: error: {message}"
    assert not out.exists()


@pytest.mark.parametrize("argv, fix", [
    (["--trajectories", "2", "--eval-batch-size", str(10**12), "--eval-limit", "0"],
     "lower --eval-batch-size to "),
    (["--trajectories", "1,1000000000", "--eval-batch-size", "1"], "lower K to "),
])
def test_trajectories_that_cannot_fit_in_memory_are_refused_before_any_work(tmp_path, checkpoint,
                                                                            argv, fix):
    """The rows of an eval batch (its puzzles x the largest K) times each row's peak memory,
    against this machine's: 2 x 10^12 rows, or 10^9 rows of one puzzle, fit in none."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        train.main(["--eval-only", "--resume", str(checkpoint), "--device", "cpu", "--out",
                    str(out), *argv])
    text = str(stop.value.code)
    K, B = argv[1].split(",")[-1], argv[3]
    assert text.startswith(f"train.py: error: --trajectories {K} runs {int(K) * int(B):,} rows at "
                           f"once ({B} puzzles per eval batch x {K}), about ")
    # the TINY model: 2 prefix tokens and 16 cells of 32 numbers
    assert "tensors of 18 tokens x 32 numbers at its peak), more than this machine's" in text
    assert fix in text and "\n" not in text and not out.exists()


@pytest.mark.parametrize("argv, differs", [
    (["--eval-only", "--task", "sudoku6"], "--task sudoku6 (the checkpoint's: sudoku4)"),
    (["--eval-only", "--model", "hrm"], "--model hrm (the checkpoint's: trm)"),
    (["--eval-only", "--hidden", "64", "--lr", "0.1"],
     "--hidden 64 (the checkpoint's: 32), --lr 0.1 (the checkpoint's: 0.003)"),
    (["--solve", PUZZLE, "--steps", "5"], "--steps 5 (the checkpoint's: 1)"),
])
def test_eval_only_refuses_a_flag_that_differs_from_the_checkpoint(tmp_path, checkpoint, argv,
                                                                   differs):
    """--eval-only (and --solve) evaluate the checkpoint's own model: another --task, --model,
    --hidden or --lr used to be dropped without a word."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        train.main(["--resume", str(checkpoint), "--out", str(out), *argv])
    text = str(stop.value.code)
    assert text.startswith(f"train.py: error: {argv[0]} runs --resume {checkpoint} as it was "
                           f"trained, so these flags would not apply: {differs}; leave them out")
    assert "\n" not in text and not out.exists()
    # the checkpoint's own values may be given
    cfg = config.resolve_config(["--eval-only", "--resume", str(checkpoint), "--task", "sudoku4",
                                 "--hidden", "32", "--eval-limit", "8"])
    assert (cfg["hidden"], cfg["eval_limit"]) == (32, 8)


def test_eval_only_scores_the_whole_test_split_and_seeds_the_noise_with_seed(checkpoint):
    """--eval-only used to score only the training's intermediate --eval-limit, and to take the
    noise's seed from the checkpoint whatever --seed said."""
    saved = torch.load(checkpoint, weights_only=False)["config"]
    assert saved["eval_limit"] > 0 and saved["seed"] == 0
    cfg = config.resolve_config(["--eval-only", "--resume", str(checkpoint)])
    assert (cfg["eval_limit"], cfg["seed"]) == (0, 0)
    cfg = config.resolve_config(["--eval-only", "--resume", str(checkpoint), "--seed", "7",
                                 "--trajectories", "2", "--noise", "0.5"])
    assert (cfg["eval_limit"], cfg["seed"]) == (0, 7)


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_one_line(tmp_path, checkpoint):
    """A config that says hidden 64 beside weights of 32: told before any data is loaded, naming
    the checkpoint and the first tensor that does not fit (load_state_dict's traceback, before)."""
    ckpt = torch.load(checkpoint, weights_only=False)
    ckpt["config"]["hidden"] = 64
    bad = tmp_path / "ckpt.pt"
    torch.save(ckpt, bad)
    out = tmp_path / "out"
    for mode in (["--eval-only"], ["--steps", "3"]):
        with pytest.raises(SystemExit) as stop:
            train.main(["--resume", str(bad), "--out", str(out), *mode])
        text = str(stop.value.code)
        assert text.startswith(f"train.py: error: --resume {bad}: its weights do not fit its "
                               f"config (puzzle_emb has shape (1, 32), this model needs (1, 64); "
                               f"the config: hidden_size 64, ")
        assert "start afresh" in text and "\n" not in text and not out.exists()


@pytest.mark.parametrize("where", ["nosuch.txt", "puzzles/nosuch"])
def test_solve_a_file_that_does_not_exist_says_file_not_found(tmp_path, checkpoint, monkeypatch,
                                                              where):
    """A name with a '/' or an extension is no grid (those have neither): it used to be read as
    one, and refused as a puzzle of the wrong length."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        train.main(["--solve", where, "--resume", str(checkpoint), "--out", "out"])
    assert str(stop.value.code) == (f"train.py: error: --solve {where}: file not found; give a "
                                    f"file of puzzles, one per line, or one grid in the task's "
                                    f"characters '.123456789'")
    assert not (tmp_path / "out").exists()


def test_a_full_disk_while_saving_keeps_the_last_checkpoint(tmp_path, checkpoint, monkeypatch):
    """The disk fills up part-way through ckpt.pt.tmp: the partial file is removed, the last good
    checkpoint stays as it was, and one line says so (two raw tracebacks before)."""
    out = tmp_path / "out"
    out.mkdir()
    good = out / "ckpt.pt"
    good.write_bytes(checkpoint.read_bytes())

    def full(obj, f):
        f.write(b"PK\x03\x04 the first bytes of a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(SystemExit) as stop:
        train.main(["--resume", str(good), "--out", str(out), "--steps", "2"])
    assert str(stop.value.code) == (
        f"train.py: error: {out}: writing the checkpoint failed (No space left on device); the "
        f"last good checkpoint, {good}, is untouched: once the folder takes files again (free "
        f"some space, or give another --out), go on with --resume {good}")
    assert good.read_bytes() == checkpoint.read_bytes()
    assert not (out / "ckpt.pt.tmp").exists()


def test_an_ablation_run_that_writes_no_results_counts_as_failed(tmp_path):
    """A run that ends without a results.json (here --dry-run) is a failure, not the number an
    older run left in its folder."""
    from lib import ablations
    stale = tmp_path / "full-seed0" / "results.json"
    stale.parent.mkdir()
    stale.write_text(json.dumps(dict(test_exact=0.99, test_cell=1.0, step=2)))
    with pytest.raises(SystemExit) as stop:
        ablations.main(["--task", "sudoku4", "--steps", "2", "--seeds", "0", "--rows", "full",
                        "--extra", "--hidden 16 --heads 2 --batch-size 8 --dry-run", "--out",
                        str(tmp_path)])
    assert str(stop.value.code) == (f"lib.ablations: the run full seed 0 wrote no {stale}: did "
                                    f"--extra end it early or send it to another --out? See "
                                    f"{tmp_path / 'full-seed0'}.txt")
    assert not stale.exists() and not (tmp_path / "runs.json").exists()
