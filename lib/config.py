"""The flags of train.py, the checks of their values and the rules of --resume. The presets they
start from are lib/presets.py (the official recipes and the small CPU tasks); preset_of() finds a
task's, or its recipe's (data.TASKS). resolve_config() turns a command line into the one plain
dict a run uses, and that dict is saved in every checkpoint; model_config() turns it into the
model's class and config."""
import argparse
import math
import os
import re
from types import SimpleNamespace

import torch

import data
from hrm import HRM, HRMConfig
from lib import parallel
from lib.presets import PRESETS
from puzzles import csv_format
from trm import TRM, TRMConfig

# -----------------------------------------------------------------------------
# each model's own settings: the recursion in its paper's symbols (careful: T means something else
# in each paper), how much of it back-propagates, and TRM's second network (Table 1 ablation)
RECURSION = {"trm": ("n", "T", "N_sup", "grad_window", "separate_nets", "act_continue"),
             "hrm": ("N", "T", "M_max", "grad_window")}
MODELS = {"trm": (TRM, TRMConfig), "hrm": (HRM, HRMConfig)}


def model_config(cfg: dict, train) -> tuple:
    """(model class, its config) for the run: from the flags and the training set's sizes
    (vocab_size, seq_len, num_puzzle_ids), or with --official from the checkpoint's
    all_config.yaml (official.prepare)."""
    # both models offer one interface: model(state, inputs, puzzle_ids) -> (state, logits, q),
    # initial_state, reset_state, halt, wants_to_halt, learns_continue, continue_target, max_steps,
    # num_params, puzzle_emb (README)
    Model, Config = MODELS[cfg["model"]]
    if cfg.get("official"):  # the table's rows are the task's puzzle ids (ARC: the build's)
        return Model, Config(**{**cfg["model_config"], "num_puzzle_ids": train.num_puzzle_ids})
    return Model, Config(vocab_size=train.vocab_size, seq_len=train.seq_len,
                         num_puzzle_ids=train.num_puzzle_ids, hidden_size=cfg["hidden"],
                         num_heads=cfg["heads"], num_layers=cfg["layers"],
                         mlp_t=cfg["net"] == "mlp", puzzle_emb_len=cfg["prefix_len"],
                         halt_exploration_prob=cfg["halt_explore"],
                         **{k: cfg[k] for k in RECURSION[cfg["model"]]})


def sized_config(cfg: dict) -> tuple:
    """model_config before the data is loaded: the data's sizes are the task's (data.TASKS), or
    the checkpoint's for --resume and --official."""
    spec = data.TASKS[cfg["task"]]
    sizes = cfg.get("model_config") or dict(vocab_size=spec["vocab"],
                                            seq_len=math.prod(spec["grid"]), num_puzzle_ids=1)
    return model_config(cfg, SimpleNamespace(**sizes))

parser = argparse.ArgumentParser(  # train.py sets the description: its usage docstring
    prog="train.py", formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog="Model and optimisation flags left unset take the value of the task's preset (PRESETS "
           "in lib/presets.py), or with --resume the checkpoint's (which may change only how long, "
           "how often, where and on what: RESUME_MAY_CHANGE); the resolved config is printed at "
           "start.")
arg = parser.add_argument
# what to run; every value left unset comes from the task's preset
arg("--model", choices=sorted(PRESETS), help="TRM (default) or HRM")
arg("--task", choices=sorted(data.TASKS), help="task and preset (default sudoku6)")
arg("--data-dir", help="folder with the official train.csv and test.csv (else cache under data/, "
    "else download, else generate offline)")
arg("--out", help="output folder (default out/<task>-<model>)")
arg("--seed", type=int, default=0, help="seed for weights, data order, augmentation, exploration")
# model
arg("--net", choices=["att", "mlp"], help="token mixer: attention with RoPE, or MLP over cells")
arg("--hidden", type=int, help="hidden size D")
arg("--heads", type=int, help="attention heads")
arg("--layers", type=int, help="blocks in the network (TRM: 2), in each of f_L and f_H (HRM: 4)")
arg("--n", type=int, help="TRM: latent updates per recursion (official L_cycles)")
arg("--T", type=int, help="TRM: recursions per supervision step, T-1 without grad (H_cycles); "
                          "HRM: low-level steps per high-level cycle (L_cycles)")
arg("--N-sup", type=int, dest="N_sup", help="TRM: max supervision steps per puzzle "
                                            "(halt_max_steps)")
arg("--N", type=int, help="HRM: high-level cycles per segment (official H_cycles)")
arg("--M-max", type=int, dest="M_max", help="HRM: max segments per puzzle (halt_max_steps)")
# TRM's Table 1 ablations on Sudoku-Extreme (full TRM 87.4%), each a flag: --grad-window 2 (w/
# 1-step gradient, 56.5%), --separate-nets (w/ separate f_H, f_L, 82.4%), --ema 0 (no EMA, 79.9%),
# --layers 4 --n 3 (w/ 4 layers, n=3, 79.5%), --net att (w/ self-attention, 74.7%)
arg("--grad-window", type=int, metavar="K",
    help="net calls that back-propagate, the last K of each supervision step; the earlier ones "
         "run without gradient. TRM: 1 .. T(n+1), default n+1 (the last recursion), 2 = the "
         "1-step gradient; HRM: 1 .. N(T+1), default 2 (the 1-step gradient); the maximum, "
         "T(n+1) or N(T+1), is full backprop through the step (never across steps)")
arg("--separate-nets", action="store_true", default=None,
    help="TRM: the y updates get a second network of --layers blocks, as HRM's f_H; the z "
         "updates keep the first")
arg("--act-continue", action="store_true", default=None,
    help="TRM: learn a continue value by Q-learning (one more forward pass per step, without "
         "gradient) and halt when Q(halt) > Q(continue), as HRM (Table 1's \"w/ ACT\"; "
         "official no_ACT_continue: False)")
arg("--halt-explore", type=float, help="probability a puzzle must run a random 2..N_sup steps")
arg("--prefix-len", type=int, help="puzzle-embedding prefix tokens (official puzzle_emb_len)")
# optimisation
arg("--batch-size", type=int, help="batch slots (official global_batch_size)")
arg("--grad-accum", type=int, help="run the batch as this many micro-batches (same result, less "
                                   "memory; the official code splits it over GPUs instead)")
arg("--steps", type=int, help="optimiser steps")
arg("--lr", type=float, help="AdamATan2 learning rate after warmup (constant afterwards)")
arg("--warmup", type=int, help="linear warmup steps")
arg("--weight-decay", type=float, help="decoupled weight decay of all weights")
arg("--emb-lr", type=float, help="SignSGD learning rate of the puzzle embedding")
arg("--emb-weight-decay", type=float, help="weight decay of the puzzle embedding")
arg("--minutes", type=float, help="stop training after this many minutes (then the final eval)")
arg("--ema", type=float, help="EMA rate of the evaluated weights (0 = evaluate the raw weights)")
arg("--augment", action=argparse.BooleanOptionalAction, help="Sudoku isomorphs / maze rotations")
arg("--num-aug", type=int, help="ARC: augmented copies per task, each its own puzzle id (official "
    "1000; the ARC Prize found 300 enough for HRM)")
# evaluation, logging, checkpoints
arg("--eval-every", type=int, help="evaluate and checkpoint every this many steps")
arg("--eval-limit", type=int, help="test puzzles in intermediate evals (0 = all); final: all; "
    "ARC always votes over its whole test split")
arg("--eval-batch-size", type=int, help="puzzles per eval batch (default: the batch size)")
arg("--log-every", type=int, help="steps per log line")
arg("--resume", help="checkpoint to continue from (same config: goes on as if never stopped)")
arg("--official", metavar="PATH_OR_HF_REPO",
    help="with --eval-only: score a checkpoint of the official code, a folder with all_config.yaml "
         "and step_<N> files (the newest is used), one step_<N> file, or a Hugging Face model "
         "repo owner/name[/subfolder]; the architecture comes from all_config.yaml")
# system
arg("--device", help="the device, as torch names it (default: the first of CUDA, MPS, CPU)")
arg("--dtype", choices=["bf16", "fp32"], help="compute dtype (default bf16 on CUDA, else fp32)")
arg("--compile", action="store_true", help="torch.compile the model (opt-in)")
arg("--dry-run", action="store_true", help="build data and model, print the config, exit")
arg("--eval-only", action="store_true",
    help="test-time scaling of the --resume checkpoint (its own config): accuracy vs supervision "
         "steps, fixed and with adaptive halting; writes scaling.csv and scaling.png, no training")
arg("--eval-steps", default=None, help="with --eval-only: step counts, e.g. 1,2,4,8,16,32,64,128 "
                                       "(default: 1 up to twice the trained maximum)")
arg("--trajectories", default=None, metavar="K[,K...]",
    help="with --eval-only: also run K trajectories per puzzle as one batch (each K one more "
         "pass), e.g. 2,4,8,16, and pick one answer by each --select rule (lib/scaling.py)")
arg("--noise", type=float, default=None, metavar="SIGMA",
    help="with --trajectories: Gaussian noise on the latent at every supervision step, SIGMA "
         "times the latent's RMS per token (PTRM, arXiv 2605.19943; default 0)")
arg("--select", default=None, metavar="RULE",
    help="with --trajectories: the selection rule, one of q (the most confident halting head), "
         "first (the first to halt), vote (the most common answer), residual (the latent nearest "
         "a fixed point), or all (the default: each, and the oracle)")
arg("--solve", metavar="PUZZLE", help="solve your own puzzle with the --resume (or --official) "
    "model: one grid in the CSV alphabet (81 characters for Sudoku, e.g. '..3.1...', 900 for a "
    "maze), or a file of them, one per line; prints the answer after each supervision step")
arg("--bench", type=int, metavar="N", help="time N optimiser steps after warm-up and exit")
arg("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


# every numeric flag's valid values, checked before any data is loaded or model built
AT_LEAST_ONE = ("hidden", "heads", "layers", "n", "T", "N_sup", "N", "M_max", "grad_window",
                "prefix_len", "batch_size", "grad_accum", "steps", "warmup", "eval_every",
                "eval_batch_size", "log_every", "bench", "threads")
AT_LEAST_ZERO = ("weight_decay", "emb_weight_decay", "eval_limit", "num_aug")
POSITIVE = ("lr", "emb_lr", "minutes")


def fail(problem: str):
    """A user error: one line that names the problem and the fix, no traceback."""
    raise SystemExit(f"train.py: error: {problem}")


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_config(cfg: dict):
    """Refuse a value no run can use, naming the flag, the value and what it must be."""
    for key in AT_LEAST_ONE + AT_LEAST_ZERO + POSITIVE:
        v = cfg.get(key)
        if v is None:
            continue
        if not math.isfinite(v):
            fail(f"{flag(key)} {v} is not a finite number")
        least = 1 if key in AT_LEAST_ONE else 0
        if v < least or (key in POSITIVE and v == 0):
            must = f"at least {least}" if key not in POSITIVE else "above 0"
            fail(f"{flag(key)} {v} must be {must}")
    if cfg.get("grad_window") is not None:  # the window must fit into one supervision step
        trm = cfg["model"] == "trm"
        calls = cfg["T"] * (cfg["n"] + 1) if trm else cfg["N"] * (cfg["T"] + 1)
        if cfg["grad_window"] > calls:
            count = f"T {cfg['T']} x (n {cfg['n']} + 1)" if trm else \
                f"N {cfg['N']} x (T {cfg['T']} + 1)"
            fail(f"--grad-window {cfg['grad_window']} is more than the {calls} = {count} net calls "
                 f"of one supervision step; --grad-window {calls} back-propagates through all "
                 f"of them (full BPTT)")
    if not 0 <= cfg["ema"] < 1:
        fail(f"--ema {cfg['ema']} must be in [0, 1): the EMA rate (0 = evaluate the raw weights)")
    if not 0 <= cfg["halt_explore"] <= 1:
        fail(f"--halt-explore {cfg['halt_explore']} must be a probability in [0, 1]")
    if cfg["net"] == "att" and cfg["hidden"] % cfg["heads"]:
        fail(f"--hidden {cfg['hidden']} must be a multiple of --heads {cfg['heads']} (attention "
             f"splits the hidden size over the heads)")
    ranks, B, K = parallel.launched_ranks(), cfg["batch_size"], cfg["grad_accum"]
    if B % (ranks * K):  # each rank takes B / ranks slots, in K micro-batches
        fail(f"--batch-size {B} must be a multiple of --grad-accum {K}" if ranks == 1 else
             f"--batch-size {B} must be a multiple of {ranks} ranks x --grad-accum {K} = "
             f"{ranks * K}: each rank takes batch-size / ranks slots, in grad-accum pieces")
    if cfg.get("eval_steps") is not None:
        parts = cfg["eval_steps"].split(",")
        if not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
            fail(f"--eval-steps {cfg['eval_steps']!r} must be step counts of at least 1 separated "
                 f"by commas, e.g. 1,2,4,8,16")
    check_breadth(cfg)
    spec = data.TASKS[cfg["task"]]
    if spec["kind"] != "arc" and cfg.get("num_aug") is not None:
        fail(f"--num-aug is a setting of the ARC tasks, not of {cfg['task']}")
    if spec["kind"] == "arc" and cfg["augment"]:
        fail("--augment: ARC's augmentations are the build's copies of each task, each with its "
             "own puzzle id; set their number with --num-aug")
    if cfg.get("solve") and spec["kind"] == "arc":
        fail("--solve takes Sudoku and maze grids; for ARC, --eval-only scores the test split")
    # a grid has no '/' and does not end in an extension, a '.' and two or more letters or
    # digits, the first a letter (Sudoku has '.' and digits, maze '# SGo'): an argument that does
    # is a path, even when no such file exists
    if cfg.get("solve") and not os.path.isfile(cfg["solve"]) and \
            re.search(r"/|\.[A-Za-z]\w+$", cfg["solve"]):
        fail(f"--solve {cfg['solve']}: file not found; give a file of puzzles, one per line, or "
             f"one grid in the task's characters {data.FAMILIES[spec['kind']].CHARS!r}")
    if cfg.get("solve"):  # read here too, so that a bad puzzle is told before any slow work
        try:
            csv_format.read_grids(cfg["solve"], data.FAMILIES[spec["kind"]],
                                  spec["grid"][0] * spec["grid"][1])
        except ValueError as e:
            fail(f"--solve {e} (task {cfg['task']})")


def check_breadth(cfg: dict):
    """--trajectories, --noise and --select: test-time breadth, with --eval-only only, and not
    with --solve (which takes no --eval-steps either)."""
    given = [flag(k) for k in ("trajectories", "noise", "select") if cfg.get(k) is not None]
    if given and not cfg.get("eval_only"):
        fail(f"{', '.join(given)}: test-time breadth applies to a trained model: use with "
             f"--eval-only --resume CKPT (or --official)")
    scaling = [flag(k) for k in ("eval_steps", "trajectories", "noise", "select")
               if cfg.get(k) is not None]
    if scaling and cfg.get("solve"):
        fail(f"{', '.join(scaling)}: --solve runs each puzzle once, for the trained number of "
             f"supervision steps, and prints every step; test-time scaling is --eval-only "
             f"without --solve: leave {', '.join(scaling)} out")
    if cfg.get("trajectories") is not None:
        parts = str(cfg["trajectories"]).split(",")
        if not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
            fail(f"--trajectories {cfg['trajectories']!r} must be counts of at least 1 separated "
                 f"by commas, e.g. 1,2,4,8,16")
    noise = cfg.get("noise")
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        fail(f"--noise {noise} must be a finite number of at least 0 (the noise's scale relative "
             f"to the latent)")
    rules = ("q", "first", "vote", "residual", "all")
    if cfg.get("select") is not None and cfg["select"] not in rules:
        fail(f"--select {cfg['select']!r} is not a selection rule; choose one of "
             f"{', '.join(rules)}")
    # one trajectory per puzzle is the deterministic run: no noise is added, nothing selected
    widest = max(int(k) for k in str(cfg.get("trajectories") or 1).split(","))
    picking = " and ".join(flag(k) for k in ("noise", "select") if cfg.get(k) is not None)
    if picking and widest == 1:
        fail(f"{picking}: one trajectory per puzzle is the deterministic run, with no noise to add "
             f"and none to select; add --trajectories K with K above 1 (e.g. 2,4,8), or leave "
             f"{picking} out")


# with --eval-only, everything else comes from the checkpoint's own config; --seed there seeds
# only the noise of --trajectories (default 0)
EVAL_FLAGS = ("resume", "eval_only", "eval_steps", "eval_limit", "eval_batch_size", "data_dir",
              "device", "dtype", "compile", "threads", "solve", "trajectories", "noise", "select",
              "seed")
# with --official the task's preset gives everything but the model, which all_config.yaml gives
# --resume goes on with the checkpoint's config (a flag left out takes its value); these may be
# given anew: how long and how often, where, and on what. Any other flag that differs is refused.
RESUME_MAY_CHANGE = ("steps", "minutes", "eval_every", "eval_limit", "eval_batch_size",
                     "log_every", "resume", "out", "data_dir", "device", "dtype", "compile",
                     "threads", "dry_run", "bench", "eval_only", "eval_steps", "trajectories",
                     "noise", "select")


def read_checkpoint(path: str, map_location="cpu", mmap: bool = False) -> dict:
    """A checkpoint that train.py wrote, or one line saying why the file is not one. mmap: the
    tensors stay in the file until read, for a look at the config or the shapes (an ARC
    checkpoint is gigabytes)."""
    if not os.path.isfile(path):
        fail(f"--resume {path}: no such file (give the ckpt.pt of an earlier run)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as e:  # empty, truncated, garbage: torch and pickle raise many kinds
        fail(f"--resume {path} cannot be read as a checkpoint ({type(e).__name__}: it may be "
             f"truncated or not a checkpoint): resume from another one, or start afresh")
    if not isinstance(ckpt, dict) or not {"config", "model", "step", "carry"} <= set(ckpt):
        fail(f"--resume {path} is not a checkpoint written by train.py (it lacks its config, "
             f"weights, step or carry)")
    return ckpt


def resumed(args: dict, saved: dict) -> dict:
    """The checkpoint's config with the flags given now; refuse one that changes the training."""
    given = {k: v for k, v in args.items() if v is not None and v != parser.get_default(k)}
    changed = [f"{flag(k)} {saved.get(k)} there, {v} now" for k, v in given.items()
               if k not in RESUME_MAY_CHANGE and saved.get(k) != v]
    if changed:
        fail(f"--resume {args['resume']} was trained with another config ({'; '.join(changed)}); "
             f"leave those flags out to go on, or start afresh in another --out. A resumed run "
             f"may change only {', '.join(flag(k) for k in RESUME_MAY_CHANGE if k != 'resume')}")
    ranks = saved.get("ranks", 1)
    if ranks != parallel.launched_ranks():  # each rank's slots and random state are in the file
        how = "a plain python train.py" if ranks == 1 else \
            f"torchrun with {ranks} processes in all, e.g. torchrun --nproc-per-node {ranks}"
        fail(f"--resume {args['resume']} was written by a run of {ranks} rank(s), this one has "
             f"{parallel.launched_ranks()}: resume it with {how} train.py --resume ...")
    return {**saved, "device": None, "dtype": None, "compile": False, **given}


def preset_of(model: str, task: str) -> dict:
    """The preset a model trains a task with: the task's own entry in lib/presets.py, else the
    entry of the task that its data.TASKS entry names as recipe; one line saying what to add
    where when there is neither, before any data is loaded."""
    recipe = data.TASKS.get(task, {}).get("recipe")  # a resumed task may be gone from TASKS
    found = PRESETS[model].get(task) or PRESETS[model].get(recipe)
    if found is None and recipe is None:
        fail(f"--task {task} has no {model.upper()} preset: add recipe=\"sudoku6\" (a task whose "
             f"presets it trains with) to its entry in data.TASKS, or an entry {task!r} to "
             f"PRESETS[{model!r}] in lib/presets.py (docs/adding-a-task.md)")
    if found is None:
        fail(f"--task {task}: its recipe {recipe!r} in data.TASKS has no {model.upper()} preset; "
             f"name one of {', '.join(PRESETS[model])}, or add an entry {task!r} to "
             f"PRESETS[{model!r}] in lib/presets.py (docs/adding-a-task.md)")
    return found


def resolve_config(argv=None) -> dict:
    args = vars(parser.parse_args(argv))
    if args["solve"]:  # solving is evaluating, on your own puzzles
        if not (args["resume"] or args["official"]):
            fail("--solve needs a trained model: give it with --resume CKPT or --official WHERE")
        args["eval_only"] = True
    if args["official"] and (args["resume"] or not args["eval_only"]):
        fail("--official scores a checkpoint of the official code: use it with --eval-only and "
             "without --resume")
    saved = read_checkpoint(args["resume"], mmap=True)["config"] if args["resume"] else None
    if saved:  # a model setting added after the checkpoint was written: it ran the preset's
        # value (None: the model's default)
        preset = preset_of(saved["model"], saved["task"])
        saved = {**saved, **{k: preset.get(k) for k in RECURSION[saved["model"]] if k not in saved}}
    if args["eval_only"] and not args["official"]:
        if not saved:
            fail("--eval-only evaluates a checkpoint: give it with --resume CKPT (or an official "
                 "one with --official)")
        # the model and its recipe are the checkpoint's: a flag that differs would not apply
        mode, allowed = "--solve" if args["solve"] else "--eval-only", EVAL_FLAGS + ("out",)
        ignored = [f"{flag(k)} {v} (the checkpoint's: {saved.get(k)})" for k, v in args.items()
                   if k not in allowed and v is not None and v != parser.get_default(k)
                   and v != saved.get(k)]
        if ignored:
            may = [flag(k) for k in allowed if k not in ("resume", "eval_only", "solve")]
            fail(f"{mode} runs --resume {args['resume']} as it was trained, so these flags would "
                 f"not apply: {', '.join(ignored)}; leave them out (with {mode}, only "
                 f"{', '.join(may)} may be given)")
        cfg = {**saved, "device": None, "dtype": None, "bench": None, "dry_run": False,
               **{k: v for k, v in args.items() if k in EVAL_FLAGS and v is not None}}
        cfg["out"] = args["out"] or os.path.dirname(os.path.abspath(args["resume"]))
        # --seed seeds only the noise of --trajectories: the data (a generated task's puzzles,
        # its test split among them) stays the one the checkpoint was trained and scored on
        cfg["data_seed"] = saved["seed"]
        # the whole test split unless --eval-limit says otherwise: the checkpoint's limit was for
        # the quick evaluations during training
        cfg["eval_limit"] = args["eval_limit"] or 0
        check_config(cfg)
        return cfg
    args["model"] = args["model"] or (saved or {}).get("model", "trm")
    args["task"] = args["task"] or (saved or {}).get("task", "sudoku6")
    model, preset = args["model"], preset_of(args["model"], args["task"])
    for other in {k for ks in RECURSION.values() for k in ks} - set(RECURSION[model]):
        if args[other] is not None:
            flags = [flag(k) for k in RECURSION[model]]
            fail(f"{flag(other)} is not a setting of {model.upper()}; its recursion is set with "
                 f"{', '.join(flags)} (see --help)")
        del args[other]
    if saved:
        cfg = resumed(args, saved)
    else:
        cfg = {k: (preset[k] if v is None and k in preset else v) for k, v in args.items()}
        cfg["out"] = cfg["out"] or os.path.join("out", f"{cfg['task']}-{cfg['model']}" +
                                                "-official" * bool(cfg["official"]))
    if cfg["eval_batch_size"] is None:
        cfg["eval_batch_size"] = cfg["batch_size"]
    if cfg["eval_only"] and args["eval_limit"] is None:  # --official: the whole test split too
        cfg["eval_limit"] = 0
    check_config(cfg)
    return cfg
