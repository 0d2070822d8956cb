"""Checkpoints of the official code, scored with --eval-only --official: folders laid out as the
official pretrain.py writes them (step_<N> state dicts with `model.` / `_orig_mod.` prefixes and an
all_config.yaml), made from the golden fixtures, read locally or from a loopback hub."""

import json
from pathlib import Path

import pytest
import torch
import yaml

import data
from lib import evaluate, official, scaling
from test_golden import MODELS, golden, model_from_golden
import train

ARCH_NAMES = {"trm": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
              "hrm": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"}


def official_folder(folder: Path, name: str, prefix: str = "_orig_mod.model.", step: int = 7,
                    arch_extra: dict | None = None, drop: str | None = None, reshape: str = ""):
    """Write the golden model `name` as the official code would save it: all_config.yaml
    (yaml.dump of the config, arch under `arch`) and step_<step> (plus an older step_1)."""
    g = golden(name)
    c = g["config"]
    arch = {k: v for k, v in c.items() if k in official.USED}
    arch.update(name=ARCH_NAMES["trm" if "trm" in name else "hrm"],
                loss={"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"})
    arch.update(arch_extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all_config.yaml").write_text(yaml.dump(
        {"arch": arch, "data_paths": ["data/sudoku-extreme-1k-aug-1000"], "global_batch_size": 768,
         "lr": 1e-4, "ema": True}))
    weights = {prefix + k: v for k, v in g["state_dict"].items() if k != drop}
    if reshape:
        weights[prefix + reshape] = torch.zeros(3, 64)
    torch.save(weights, folder / f"step_{step}")
    torch.save({prefix + k: torch.zeros_like(v) for k, v in g["state_dict"].items()},
               folder / "step_1")  # an older checkpoint: the newest must be the one loaded
    return g


def eval_logits(model, g):
    """The golden fixture's eval protocol: three supervision steps from a fresh state."""
    model.eval()
    state, out = model.initial_state(len(g["inputs"])), []
    with torch.no_grad():
        for _ in range(3):
            state, logits, _ = model(state, g["inputs"], g["puzzle_identifiers"])
            out.append(logits)
    return torch.stack(out)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("prefix", ["model.", "_orig_mod.model."])
def test_an_official_folder_loads_to_the_golden_logits(tmp_path, name, prefix):
    g = official_folder(tmp_path / "ckpt", name, prefix)
    file, step = official.step_file(official.fetch(str(tmp_path / "ckpt")))
    assert (file.name, step) == ("step_7", 7)
    c = g["config"]
    Model, config = official.model_config(official.read_arch(file.parent), c["vocab_size"],
                                          c["seq_len"], 1)
    model = Model(config)
    official.load(model, official.read_state_dict(file), f"--official {file}")
    expected = g["eval_logits"]
    err = (eval_logits(model, g) - expected).abs().max() / expected.abs().max()
    assert err < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_eval_only_official_from_a_loopback_hub(tmp_path, hf_server, monkeypatch, name):
    """`--eval-only --official owner/repo/subfolder` fetches the folder through $HF_ENDPOINT (the
    file list from the hub's model API) and scores it on the task's test set: the same curves as
    the golden model loaded directly. sudoku4 has the fixtures' vocab 6 and 16 cells."""
    root, url, hits = hf_server
    monkeypatch.setenv("HF_ENDPOINT", url)
    test = data.load_task("sudoku4")[1]  # in the suite's data/, before leaving it
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "generated").symlink_to(Path("data", "generated").resolve())
    monkeypatch.chdir(tmp_path)  # the fetched checkpoint goes to this test's data/checkpoints/
    repo = root / "someone" / "trm-golden" / "resolve" / "main"
    official_folder(repo / "run1", name)
    files = ["README.md", "run1/all_config.yaml", "run1/step_1", "run1/step_7", "other/step_9"]
    api = root / "api" / "models" / "someone"
    api.mkdir(parents=True)
    (api / "trm-golden").write_text(json.dumps({"siblings": [{"rfilename": f} for f in files]}))
    out = tmp_path / "out"
    table = train.main(["--eval-only", "--official", "someone/trm-golden/run1", "--task",
                        "sudoku4", "--eval-steps", "1,4,8", "--eval-limit", "64", "--out", str(out),
                        "--threads", "1"])
    assert "/someone/trm-golden/resolve/main/run1/step_7" in hits
    assert not any("other" in h for h in hits)  # only the named subfolder is fetched
    assert (tmp_path / "data/checkpoints/someone/trm-golden/run1/step_7").exists()
    model = model_from_golden(name, golden(name))
    expected = scaling.test_time_scaling(model, test, dict(device="cpu", eval_limit=64,
                                                           eval_batch_size=64, seed=0), [1, 4, 8])
    assert [(r["mode"], r["steps"], r["exact"]) for r in table] == \
        [(r["mode"], r["steps"], r["exact"]) for r in expected]
    assert (out / "scaling.csv").exists() and "params:" in (out / "log.txt").read_text()
    # a named step file of a subfolder is the one scored, not the newest
    train.main(["--eval-only", "--official", "someone/trm-golden/run1/step_1", "--task", "sudoku4",
                "--eval-steps", "1", "--eval-limit", "8", "--out", str(tmp_path / "out1")])
    assert '"official_step": 1' in (tmp_path / "out1" / "log.txt").read_text()


@pytest.mark.parametrize("change, message", [
    (dict(drop="inner.lm_head.weight"), "missing output_head.weight"),  # trm.py's name of it
    (dict(reshape="inner.puzzle_emb.weights"), "puzzle_emb has shape (3, 64), this model needs "
                                               "(1, 64) (the puzzle-embedding table"),
    (dict(arch_extra={"new_thing": 3}), "arch option(s) new_thing are not known here"),
    (dict(arch_extra={"name": "other.model@Transformer"}), "is neither TRM nor HRM"),
    (dict(arch_extra={"pos_encodings": "learned"}), "pos_encodings 'learned' is not implemented"),
])
def test_a_checkpoint_that_does_not_fit_is_one_clear_error(tmp_path, change, message):
    official_folder(tmp_path / "ckpt", "trm_att", **change)
    with pytest.raises(SystemExit) as stop:
        train.main(["--eval-only", "--official", str(tmp_path / "ckpt"), "--task", "sudoku4",
                    "--out", str(tmp_path / "out")])
    text = str(stop.value.code)
    assert text.startswith("train.py: error: ") and message in text and "\n" not in text


def broken_config(folder: Path, name: str, change):
    """The golden model's official folder with its all_config.yaml replaced by the text `change`,
    or with the arch fields of the dict `change` set (None: removed)."""
    official_folder(folder, name)
    path = folder / "all_config.yaml"
    if isinstance(change, str):
        path.write_text(change)
        return
    config = yaml.safe_load(path.read_text())
    config["arch"].update(change)
    config["arch"] = {k: v for k, v in config["arch"].items() if v is not None}
    path.write_text(yaml.dump(config))


def refused(tmp_path, folder: Path) -> str:
    """The one line --eval-only --official stops with; nothing was written."""
    with pytest.raises(SystemExit) as stop:
        train.main(["--eval-only", "--official", str(folder), "--task", "sudoku4", "--out",
                    str(tmp_path / "out")])
    text = str(stop.value.code)
    assert text.startswith("train.py: error: ") and "\n" not in text
    assert not (tmp_path / "out").exists()  # before any data was loaded or model built
    return text[len("train.py: error: "):]


NO_ARCH = "--official {path} has no arch: mapping, the model's settings as the official " \
    "pretrain.py writes them (hidden_size, num_heads, ...): fix it, or remove it to take the " \
    "model from the flags"
A_COUNT = "must be an integer of at least 1"


@pytest.mark.parametrize("change, message", [
    ("arch: [hidden_size: 64\n  : {", "--official {path} is not YAML (expected ',' or ']', but "
                                      "got ':' at line 2): fix it, or remove it to take the model "
                                      "from the flags"),
    ("- name: trm\n- hidden_size: 64\n", NO_ARCH),
    ("global_batch_size: 768\n", NO_ARCH),
    (dict(hidden_size=None), "all_config.yaml: arch has no hidden_size, which the model needs: "
                             "add the value the checkpoint was trained with"),
    (dict(hidden_size="abc"), f"all_config.yaml: arch hidden_size 'abc' {A_COUNT}"),
    (dict(hidden_size=-64), f"all_config.yaml: arch hidden_size -64 {A_COUNT}"),
    (dict(hidden_size=64.5), f"all_config.yaml: arch hidden_size 64.5 {A_COUNT}"),
    (dict(num_heads=0), f"all_config.yaml: arch num_heads 0 {A_COUNT}"),
    (dict(num_heads=5), "all_config.yaml: arch hidden_size 64 must be a multiple of num_heads 5 "
                        "(attention splits the hidden size over the heads)"),
    (dict(expansion=True), "all_config.yaml: arch expansion True must be a number above 0"),
    (dict(halt_exploration_prob=2), "all_config.yaml: arch halt_exploration_prob 2 must be a "
                                    "probability in [0, 1]"),
])
def test_a_broken_all_config_is_one_line_before_any_work(tmp_path, change, message):
    """Not YAML, a list, a field missing or of the wrong type or sign: each ended in a traceback
    (a KeyError, a TypeError from torch.empty, a ZeroDivisionError in the RoPE tables)."""
    broken_config(tmp_path / "ckpt", "trm_att", change)
    path = tmp_path / "ckpt" / "all_config.yaml"
    assert refused(tmp_path, tmp_path / "ckpt") == message.format(path=path)


@pytest.mark.parametrize("name, field", [("trm_att", "L_cycles"), ("trm_att", "H_cycles"),
                                         ("trm_att", "halt_max_steps"), ("hrm_att", "L_cycles"),
                                         ("hrm_att", "H_cycles"), ("hrm_att", "halt_max_steps")])
def test_a_recursion_of_zero_cycles_or_steps_is_refused_as_the_flags_are(tmp_path, name, field):
    """L_cycles 0 left the latent where it started, halt_max_steps 0 crashed later (a math domain
    error, an empty torch.stack); --n 0 and --N-sup 0 are refused, and so are these."""
    broken_config(tmp_path / "ckpt", name, {field: 0})
    assert refused(tmp_path, tmp_path / "ckpt") == f"all_config.yaml: arch {field} 0 {A_COUNT}"


@pytest.mark.parametrize("hidden", [32, 128])
def test_a_hidden_size_that_does_not_fit_names_the_tensor_and_the_config(tmp_path, hidden):
    """The weights are of hidden size 64: the first tensor that does not fit, and what
    all_config.yaml says, before any data is loaded (this used to blame the number of puzzle ids,
    after the data was loaded)."""
    broken_config(tmp_path / "ckpt", "trm_att", dict(hidden_size=hidden))
    text = refused(tmp_path, tmp_path / "ckpt")
    assert text == (f"--official {tmp_path / 'ckpt' / 'step_7'}: its weights do not fit the model "
                    f"from all_config.yaml (puzzle_emb has shape (1, 64), this model needs (1, "
                    f"{hidden}); the config: hidden_size {hidden}, expansion 4, 2 layers, "
                    f"attention, puzzle_emb_len 4, vocab_size 6, seq_len 16): make "
                    f"all_config.yaml match the checkpoint's training (vocab_size and seq_len come "
                    f"from --task)")


def test_official_needs_eval_only():
    with pytest.raises(SystemExit, match="use it with --eval-only"):
        train.main(["--official", "some/repo", "--task", "sudoku4"])


def test_without_all_config_the_flags_give_the_model(tmp_path):
    """HRM's published ARC-2 checkpoint has no all_config.yaml: the architecture then comes from
    the flags, and a wrong one is refused naming the tensor that does not fit."""
    official_folder(tmp_path / "ckpt", "hrm_att")
    (tmp_path / "ckpt" / "all_config.yaml").unlink()
    base = ["--eval-only", "--official", str(tmp_path / "ckpt"), "--task", "sudoku4", "--model",
            "hrm", "--eval-steps", "2", "--eval-limit", "8", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="missing H_layers.0.mlp_t"):  # the preset's MLP-t mixer
        train.main(base)
    table = train.main(base + ["--net", "att", "--M-max", "4"])
    rows = [r for r in table if r["mode"] != "residual_by_step"]  # the fixed-point diagnostics
    assert [r["steps"] for r in rows] == [2, 2] and rows[0]["puzzles"] == 8


def test_solve_prints_each_supervision_step_of_a_fixed_model(tmp_path, capsys):
    """--solve with the golden TRM (fixed weights) on one 4x4 puzzle: the printed grid after each
    of its 4 supervision steps is that of evaluate.solve on the same model loaded directly."""
    official_folder(tmp_path / "ckpt", "trm_att")
    puzzle = "1...3..1..4..2.."
    out = train.main(["--solve", puzzle, "--official", str(tmp_path / "ckpt"), "--task",
                      "sudoku4", "--out", str(tmp_path / "out"), "--threads", "1"])
    printed = capsys.readouterr().out
    model = model_from_golden("trm_att", golden("trm_att"))
    x = torch.tensor([[".1234".index(ch) + 1 for ch in puzzle]])
    direct = evaluate.solve(model, x)
    assert torch.equal(out["answers"], direct["answers"]) and out["answers"].shape == (4, 1, 16)
    for k in range(4):
        verdict = "halt" if direct["halt"][k, 0] else "go on"
        block = printed.split(f"step {k + 1} | halting head: {verdict} | ")[1]
        grid = data.decode("sudoku", direct["answers"][k, 0])
        assert block.split("\n", 1)[1].startswith(grid)
    assert "\nanswer: " in printed


@pytest.mark.parametrize("puzzle, message", [
    ("1...3..1..4..2.", "puzzle has 15 characters, a grid of this task has 16"),
    ("1...3..1..4..2.x", "puzzle has 'x' at cell 15"),
    ("11..3..1..4..2..", "puzzle: row 1 has the digit 1 twice"),
    ("1...1...........", "puzzle: column 1 has the digit 1 twice"),
    ("15..............", "puzzle: cell 1 holds no digit of a 4x4 Sudoku"),
])
def test_solve_refuses_a_bad_puzzle_before_any_work(tmp_path, puzzle, message):
    official_folder(tmp_path / "ckpt", "trm_att")
    with pytest.raises(SystemExit) as stop:
        train.main(["--solve", puzzle, "--official", str(tmp_path / "ckpt"), "--task", "sudoku4",
                    "--out", str(tmp_path / "out")])
    assert message in str(stop.value.code)
    assert not (tmp_path / "out").exists()


def test_solve_reads_a_file_of_puzzles_and_names_the_bad_line(tmp_path):
    official_folder(tmp_path / "ckpt", "trm_att")
    (tmp_path / "p.txt").write_text("1...3..1..4..2..\n.2..............\n1...3.\n")
    with pytest.raises(SystemExit, match=r"p\.txt, line 3 has 6 characters"):
        train.main(["--solve", str(tmp_path / "p.txt"), "--official", str(tmp_path / "ckpt"),
                    "--task", "sudoku4", "--out", str(tmp_path / "out")])
    (tmp_path / "p.txt").write_text("1...3..1..4..2..\n.2..............\n")
    out = train.main(["--solve", str(tmp_path / "p.txt"), "--official", str(tmp_path / "ckpt"),
                      "--task", "sudoku4", "--out", str(tmp_path / "out")])
    assert out["answers"].shape == (4, 2, 16)


def test_a_path_that_is_neither_a_folder_nor_a_reachable_repo_is_one_line(tmp_path, monkeypatch):
    import socket
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(SystemExit) as stop:
        train.main(["--eval-only", "--official", "no/such/ckpt", "--task", "sudoku4", "--out",
                    str(tmp_path / "out")])
    text = str(stop.value.code)
    assert "--official no/such/ckpt: no such folder, and fetching it as a Hugging Face repo" in text
    assert "\n" not in text and not (tmp_path / "out").exists()
