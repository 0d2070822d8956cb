"""A user error (a bad flag value, a device this machine lacks) stops with one line that names the
flag, the value and what it must be, before any data is loaded or anything is written."""

import hashlib
import json
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
