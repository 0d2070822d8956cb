"""
Train and evaluate a recursive reasoning model, top to bottom in one script.

Small tasks, a few minutes on a laptop CPU:
    python train.py --model trm --task sudoku6
    python train.py --model trm --task maze-small
    python train.py --model trm --task sudoku6 --T 1 --n 1 --N-sup 1  # recursion off
    python train.py --model hrm --task sudoku6
The papers' recipes, one GPU (data downloaded from Hugging Face, or read from --data-dir):
    python train.py --model trm --task sudoku            # TRM-MLP, Sudoku-Extreme (paper: 87.4%)
    python train.py --model trm --task sudoku --net att  # TRM-Att, Sudoku-Extreme (paper: 74.7%)
    python train.py --model trm --task maze              # TRM-Att, Maze-Hard (paper: 85.3%)
    python train.py --model hrm --task sudoku            # HRM, Sudoku-Extreme (paper: 55.0%)
    python train.py --model hrm --task maze              # HRM, Maze-Hard (paper: 74.5%)
Other modes:
    python train.py --task sudoku --dry-run              # build data and model, print config
    python train.py --task sudoku --bench 20             # time 20 optimiser steps
    python train.py --task sudoku6 --resume out/sudoku6-trm/ckpt.pt   # continue a killed run
    python train.py --eval-only --resume out/sudoku6-trm/ckpt.pt --eval-steps 1,2,4,8,16,32
                                             # test-time scaling: accuracy vs supervision steps
"""

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict

import torch

import data
from hrm import HRM, HRMConfig
from trm import TRM, TRMConfig

# -----------------------------------------------------------------------------
# the two models and their presets: the official recipes (spec trm.md §4, hrm.md §3) and small CPU
# tasks. Every value is a flag below.
MODELS = {"trm": (TRM, TRMConfig), "hrm": (HRM, HRMConfig)}
# the recursion in each paper's symbols (careful: T means something else in each paper)
RECURSION = {"trm": ("n", "T", "N_sup"), "hrm": ("N", "T", "M_max")}

TRM_PAPER = dict(net="mlp", hidden=512, heads=8, layers=2, n=6, T=3, N_sup=16, halt_explore=0.1,
                 prefix_len=16, batch_size=768, grad_accum=1, lr=1e-4, warmup=2000,
                 weight_decay=1.0, emb_lr=1e-4, emb_weight_decay=1.0, ema=0.999, steps=65100,
                 eval_every=6510, eval_limit=20000, augment=True, log_every=100)
# HRM: attention, two 4-layer modules, N=T=2, one prefix token, no EMA; 20k epochs = 26,040 steps
HRM_PAPER = {**{k: v for k, v in TRM_PAPER.items() if k not in RECURSION["trm"]},
             "net": "att", "layers": 4, "N": 2, "T": 2, "M_max": 16, "prefix_len": 1, "ema": 0,
             "steps": 26040, "eval_every": 2604}
# small tasks, our own recipe (no official one): a 2-core CPU learns them in minutes. The MLP-t
# mixer learns small grids far faster than attention, as the TRM paper found for Sudoku; both
# models use it here (and an EMA) so that they are compared on equal terms.
SMALL = dict(net="mlp", hidden=64, heads=4, prefix_len=1, batch_size=64, lr=3e-3, warmup=100,
             weight_decay=0.1, emb_lr=3e-3, emb_weight_decay=0.1, ema=0.99, eval_every=250,
             eval_limit=1000, log_every=50)
TRM_SMALL = {**TRM_PAPER, **SMALL, "n": 3, "T": 2, "N_sup": 8}
HRM_SMALL = {**HRM_PAPER, **SMALL, "layers": 2, "N": 2, "T": 2, "M_max": 8}
PRESETS = {
    "trm": {
        "sudoku": TRM_PAPER,  # TRM-MLP, T=3, n=6; 50k epochs of 1000 puzzles at batch 768
        # TRM-Att, n=4 and no augmentation as in the official README command (paper: n=6, dihedral)
        # 3 micro-batches of 256 mazes (49.5 GiB on an H100); all 768 at once need about 150 GiB
        "maze": {**TRM_PAPER, "net": "att", "n": 4, "augment": False, "eval_limit": 1000,
                 "grad_accum": 3},
        "sudoku4": {**TRM_SMALL, "steps": 600},
        "sudoku6": {**TRM_SMALL, "steps": 1200},
        "maze-small": {**TRM_SMALL, "steps": 2700},
    },
    "hrm": {
        "sudoku": HRM_PAPER,
        "maze": {**HRM_PAPER, "augment": False, "eval_limit": 1000, "grad_accum": 3},
        "sudoku4": {**HRM_SMALL, "steps": 600},
        # batch 64 stalled at 82-84% (lr 3e-3) or 73% (lr 1e-3); 128 passed 90% (measured)
        "sudoku6": {**HRM_SMALL, "steps": 1200, "batch_size": 128},
        "maze-small": {**HRM_SMALL, "steps": 2700},
    },
}

parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog="Model and optimisation flags left unset take the value of the task's preset (PRESETS "
           "in train.py); the resolved config is printed at start.")
arg = parser.add_argument
# what to run; every value left unset comes from the task's preset
arg("--model", default="trm", choices=sorted(MODELS), help="TRM (default) or HRM")
arg("--task", default="sudoku6", choices=sorted(PRESETS["trm"]),
    help="task and preset (default sudoku6)")
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
# evaluation, logging, checkpoints
arg("--eval-every", type=int, help="evaluate and checkpoint every this many steps")
arg("--eval-limit", type=int, help="test puzzles in intermediate evals (0 = all); final: all")
arg("--eval-batch-size", type=int, help="puzzles per eval batch (default: the batch size)")
arg("--log-every", type=int, help="steps per log line")
arg("--resume", help="checkpoint to continue from (same config: goes on as if never stopped)")
# system
arg("--device", help="cuda, mps or cpu (default: the first available)")
arg("--dtype", choices=["bf16", "fp32"], help="compute dtype (default bf16 on CUDA, else fp32)")
arg("--compile", action="store_true", help="torch.compile the model (opt-in)")
arg("--dry-run", action="store_true", help="build data and model, print the config, exit")
arg("--eval-only", action="store_true",
    help="test-time scaling of the --resume checkpoint (its own config): accuracy vs supervision "
         "steps, fixed and with adaptive halting; writes scaling.csv and scaling.png, no training")
arg("--eval-steps", default=None, help="with --eval-only: step counts, e.g. 1,2,4,8,16,32,64,128 "
                                       "(default: 1 up to twice the trained maximum)")
arg("--bench", type=int, metavar="N", help="time N optimiser steps after warm-up and exit")
arg("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


# with --eval-only, everything else comes from the checkpoint's own config
EVAL_FLAGS = ("resume", "eval_only", "eval_steps", "eval_limit", "eval_batch_size", "data_dir",
              "device", "dtype", "compile", "threads")


def resolve_config(argv=None) -> dict:
    args = vars(parser.parse_args(argv))
    if args["eval_only"]:
        if not args["resume"]:
            parser.error("--eval-only evaluates a checkpoint: give it with --resume CKPT")
        saved = torch.load(args["resume"], map_location="cpu", weights_only=False)["config"]
        cfg = {**saved, "device": None, "dtype": None, "bench": None, "dry_run": False,
               **{k: v for k, v in args.items() if k in EVAL_FLAGS and v is not None}}
        cfg["out"] = args["out"] or os.path.dirname(os.path.abspath(args["resume"]))
        return cfg
    model, preset = args["model"], PRESETS[args["model"]][args["task"]]
    for other in {k for ks in RECURSION.values() for k in ks} - set(RECURSION[model]):
        if args[other] is not None:
            flags = [f"--{k.replace('_', '-')}" for k in RECURSION[model]]
            parser.error(f"--{other.replace('_', '-')} is not a setting of {model.upper()}; its "
                         f"recursion is set with {', '.join(flags)} (see --help)")
        del args[other]
    cfg = {k: (preset[k] if v is None and k in preset else v) for k, v in args.items()}
    cfg["out"] = cfg["out"] or os.path.join("out", f"{cfg['task']}-{cfg['model']}")
    cfg["eval_batch_size"] = cfg["eval_batch_size"] or cfg["batch_size"]
    if cfg["batch_size"] % cfg["grad_accum"]:
        parser.error(f"--batch-size {cfg['batch_size']} must be a multiple of --grad-accum "
                     f"{cfg['grad_accum']}")
    return cfg


# -----------------------------------------------------------------------------
# loss and optimisers

def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with stablemax instead of softmax (Prieto et al. 2025), in float64 as in the
    official code: s(v) = v + 1 for v >= 0, 1 / (1 - v) below, p_i = s(l_i) / sum_j s(l_j)."""
    x = logits.double()
    # clamp: the branch torch.where discards must stay finite, or its gradient (0 * inf at x = 1,
    # common for bf16 logits) is NaN; the official code adds 1e-30 to 1 - x for the same reason
    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))  # (B, S, V)
    picked = s.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)  # (B, S)
    return torch.log(s.sum(-1)) - torch.log(picked)  # (B, S)


class AdamATan2(torch.optim.Optimizer):
    """Adam with atan2 in place of m / (sqrt(v) + eps): no epsilon, bounded steps (Everett et al.
    2024, arXiv:2407.05872), with decoupled weight decay; the official code's optimiser, written out
    here instead of the CUDA package adam-atan2."""

    def __init__(self, params, lr: float, betas=(0.9, 0.95), weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["t"] += 1
                m, v, t = state["m"], state["v"], state["t"]
                m.lerp_(p.grad, 1 - beta1)
                v.lerp_(p.grad.square(), 1 - beta2)
                p.mul_(1 - lr * wd)
                v_hat = v / (1 - beta2 ** t)
                p.add_(torch.atan2(m, v_hat.sqrt()), alpha=-lr / (1 - beta1 ** t))


class SignSGD(torch.optim.Optimizer):
    """w <- w * (1 - lr * wd) - lr * sign(grad), for the puzzle-embedding rows used in the batch."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                # rows of puzzles absent from the batch have zero gradient and stay untouched
                used = (p.grad != 0).any(-1, keepdim=True)
                lr, wd = group["lr"], group["weight_decay"]
                decayed = p * (1 - lr * wd) - lr * p.grad.sign()
                p.copy_(torch.where(used, decayed, p))


@torch.no_grad()
def ema_update(ema_model, model, rate: float):
    # shadow <- rate * shadow + (1 - rate) * weights; the puzzle embedding is copied, not averaged,
    # as in the official code where it is a buffer outside the EMA
    for (name, p_ema), p in zip(ema_model.named_parameters(), model.parameters()):
        if name == "puzzle_emb":
            p_ema.copy_(p)
        else:
            p_ema.lerp_(p, 1 - rate)


# -----------------------------------------------------------------------------
# one step of deep supervision for every slot of the carry (official training loop, spec trm.md
# §2.2): halted slots are refilled with the new batch's puzzle at their index and a fresh state,
# then every slot advances by one supervision step. Pure tensor code, no host syncs: this is the
# function that --compile compiles.

def supervision_step(model, carry: dict, inputs, labels, puzzle_ids):
    h = carry["halted"]  # (B,)
    state = model.reset_state(carry["state"], h)
    steps = torch.where(h, 0, carry["steps"])
    inputs = torch.where(h[:, None], inputs, carry["inputs"])  # (B, S)
    labels = torch.where(h[:, None], labels, carry["labels"])  # (B, S)

    state, logits, q = model(state, inputs, puzzle_ids)
    steps = steps + 1
    halted = model.halt(q, steps)

    # loss: per-puzzle mean of the token losses, plus 0.5 * the halting head's loss (TRM: BCE of
    # "halt" against "my answer is exactly right"; HRM adds its Q-learning continue target),
    # averaged over all slots (official: summed, then divided by the global batch)
    correct = logits.argmax(-1) == labels  # (B, S)
    exact = correct.all(-1)  # (B,)
    lm_loss = stablemax_cross_entropy(logits, labels).mean(-1)  # (B,)
    halt_loss = model.halt_loss(q, exact, state, inputs, puzzle_ids, steps)  # (B,)
    loss = (lm_loss.sum() + 0.5 * halt_loss.sum()) / len(inputs)

    # metrics of the puzzles that finished at this step (summed; divided at log time)
    done = halted.float()
    metrics = dict(loss=loss.detach(), halted=done.sum(), exact=(exact * done).sum(),
                   cell=(correct.float().mean(-1) * done).sum(), steps=(steps * done).sum())
    carry = dict(state=state, steps=steps, halted=halted, inputs=inputs, labels=labels)
    return carry, loss, metrics


def slots(carry: dict, part: slice) -> dict:
    """The carry of the slots in `part` (views, no copies)."""
    return {k: tuple(t[part] for t in v) if isinstance(v, tuple) else v[part]
            for k, v in carry.items()}


def join_slots(carries: list) -> dict:
    """Concatenate the carries of consecutive slot ranges back into one."""
    return {k: tuple(map(torch.cat, zip(*(c[k] for c in carries))))
            if isinstance(carries[0][k], tuple) else torch.cat([c[k] for c in carries])
            for k in carries[0]}


# -----------------------------------------------------------------------------
# data order: a pure function of (seed, step), so a resumed run sees exactly the same batches

def epoch_order(seed: int, epoch: int, num: int) -> torch.Tensor:
    # one random permutation of the training puzzles per epoch, as the official loader draws them.
    # deviation: epochs run on without a break; the official loader drops the last partial batch
    # of every eval interval (320 of 5,000,000 samples)
    return torch.randperm(num, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def get_batch(train, step: int, cfg: dict):
    B, num = cfg["batch_size"], train.inputs.shape[0]
    first = step * B
    epochs = range(first // num, (first + B - 1) // num + 1)
    orders = [epoch_order(cfg["seed"], e, num) for e in epochs]
    idx = torch.cat(orders)[first % num:first % num + B]
    inputs, labels = train.inputs[idx], train.labels[idx]
    # deviation: a fresh random isomorph every time a puzzle is drawn, where the official dataset
    # stores 1000 fixed augmentations per puzzle and draws one of those 1001 variants
    if cfg["augment"]:
        gen = torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + step + 1)
        inputs, labels = data.augment(train.kind, train.grid, inputs, labels, gen)
    return inputs, labels


# -----------------------------------------------------------------------------
# evaluation: every test puzzle runs a number of supervision steps from a fresh state

@torch.no_grad()
def run_on_test(model, test, cfg: dict, steps: int, limit: int = 0, autocast=nullcontext()):
    """The first `limit` test puzzles (0 = all), each run for `steps` supervision steps. Returns,
    per puzzle and step, whether its answer is exactly right and whether the halting head wants to
    stop ((num, steps) bools, kept on the device: no host sync per step), and the cell accuracy
    after the last step."""
    model.eval()
    num = min(limit or len(test.inputs), len(test.inputs))
    exact = torch.zeros(num, steps, dtype=torch.bool, device=cfg["device"])
    wants = torch.zeros(num, steps, dtype=torch.bool, device=cfg["device"])
    cell = torch.zeros((), device=cfg["device"])
    for start in range(0, num, cfg["eval_batch_size"]):
        rows = slice(start, min(num, start + cfg["eval_batch_size"]))
        inputs, labels = test.inputs[rows].to(cfg["device"]), test.labels[rows].to(cfg["device"])
        ids = torch.zeros(len(inputs), dtype=torch.long, device=cfg["device"])
        state = model.initial_state(len(inputs))
        for k in range(steps):
            with autocast:
                state, logits, q = model(state, inputs, ids)
            correct = logits.argmax(-1) == labels  # (B, S)
            exact[rows, k] = correct.all(-1)
            wants[rows, k] = model.wants_to_halt(q)
        cell += correct.float().mean(-1).sum()
    model.train()
    return exact, wants, cell.item() / num


def evaluate(model, test, cfg: dict, limit: int = 0, autocast=nullcontext()) -> dict:
    """Test exact accuracy after all N_sup steps (what the official code reports), and per step."""
    exact, _, cell = run_on_test(model, test, cfg, model.max_steps, limit, autocast)
    by_step = exact.float().mean(0).tolist()
    return dict(exact=by_step[-1], cell=cell, puzzles=len(exact),
                exact_by_step=[round(a, 4) for a in by_step])


def test_time_scaling(model, test, cfg: dict, counts: list, autocast=nullcontext()) -> list:
    """Accuracy vs test-time compute. Every test puzzle runs max(counts) supervision steps (more
    than training's N_sup if asked); from that one pass come two curves:
    fixed: the answer after exactly k steps;
    adaptive: the answer at the first step whose halting head says stop (at most k): what
    inference with learned halting would return, with its mean number of steps."""
    K = max(counts)
    exact, wants, _ = run_on_test(model, test, cfg, K, cfg["eval_limit"], autocast)
    num = len(exact)
    calls, table = model.net_calls(), []
    step_no = torch.arange(1, K + 1, device=exact.device)
    for k in sorted(counts):
        table.append(dict(mode="fixed", steps=k, mean_steps=k, net_calls=k * calls,
                          exact=exact[:, k - 1].float().mean().item(), puzzles=num))
        # first step at which the head says stop, or k
        stop = torch.where(wants[:, :k], step_no[:k], k).min(-1).values  # (num,)
        right = exact.gather(1, (stop - 1)[:, None]).squeeze(1)
        table.append(dict(mode="adaptive", steps=k, mean_steps=stop.float().mean().item(),
                          net_calls=stop.float().mean().item() * calls,
                          exact=right.float().mean().item(), puzzles=num))
    return table


def plot_scaling(table: list, trained: int, path: str, title: str):
    import matplotlib.ticker
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend stays as it is
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for mode, style in (("fixed", "o-"), ("adaptive", "s--")):
        rows = [r for r in table if r["mode"] == mode]
        ax.plot([r["mean_steps"] for r in rows], [100 * r["exact"] for r in rows], style,
                label={"fixed": "k supervision steps", "adaptive": "halting head, at most k"}[mode])
    ax.axvline(trained, color="gray", lw=0.8, ls=":", label=f"trained with {trained}")
    ax.set(xscale="log", xlabel="supervision steps per puzzle (mean)",
           ylabel="test exact accuracy (%)", title=title)
    counts = sorted({r["steps"] for r in table})
    ax.set_xticks(counts, [str(k) for k in counts])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# -----------------------------------------------------------------------------
# speed: an analytical FLOP count for --bench's model FLOP utilisation (MFU)

PEAK_BF16_TFLOPS = {"H100": 989, "H200": 989, "A100": 312}  # dense, per the vendors' data sheets


def flops_per_step(model, batch_size: int) -> float:
    """Matmul and attention FLOPs of one optimiser step: the forward of every net call, plus a
    backward (2x the forward) of the calls that carry gradient. Norms, RoPE, the heads and the
    optimiser are left out (under 1%)."""
    c = model.config
    L, D = c.puzzle_emb_len + c.seq_len, c.hidden_size

    def swiglu(d, tokens):  # three matmuls of d x inter, 2 FLOPs per multiply-add
        return 6 * tokens * d * (256 * math.ceil(round(c.expansion * d * 2 / 3) / 256))

    mixer = swiglu(L, D) if c.mlp_t else 8 * L * D * D + 4 * L * L * D  # MLP-t, or qkv+o+attention
    per_call = c.num_layers * (swiglu(D, L) + mixer)
    forward, with_grad = model.calls_per_step()
    return batch_size * per_call * (forward + 2 * with_grad)


def peak_flops(device) -> float | None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return next((1e12 * tf for gpu, tf in PEAK_BF16_TFLOPS.items() if gpu in name), None)


# -----------------------------------------------------------------------------
# small utilities: logging, progress, checkpoints, plots

def fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def save_checkpoint(path: str, ckpt: dict):
    # write to a temporary file and rename: a crash mid-write never leaves a broken checkpoint
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(ckpt, path + ".tmp")
    os.replace(path + ".tmp", path)


def plot_curves(history: list, evals: list, path: str, title: str):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot([h["step"] for h in history], [h["loss"] for h in history])
    ax_loss.set(xlabel="optimiser step", ylabel="train loss", yscale="log", title="loss")
    steps = [h["step"] for h in history]
    ax_acc.plot(steps, [h["exact"] for h in history], label="train exact (halted)")
    ax_acc.plot(steps, [h["cell"] for h in history], label="train cell", alpha=0.6)
    ax_acc.plot([e["step"] for e in evals], [e["exact"] for e in evals], "o-",
                label="test exact (EMA)")
    ax_acc.set(xlabel="optimiser step", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


class Progress:
    """A one-line progress bar with ETA on a terminal; log lines are printed above it."""

    def __init__(self, total: int, start: int, log_file, minutes=None):
        self.total, self.start, self.t0, self.last = total, start, time.time(), 0.0
        self.tty, self.log_file = sys.stdout.isatty(), log_file
        self.budget = 60 * minutes if minutes is not None else float("inf")  # --minutes

    def eta(self, step: int) -> str:
        done, elapsed = step - self.start, time.time() - self.t0
        if not done:
            return "?"
        return fmt_time(max(0, min(elapsed / done * (self.total - step), self.budget - elapsed)))

    def update(self, step: int):
        if self.tty and time.time() - self.last > 0.5:
            self.last, frac = time.time(), step / self.total
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            print(f"\r[{bar}] {step}/{self.total} {frac:4.0%} | ETA {self.eta(step)}", end="",
                  flush=True)

    def log(self, line: str):
        print(("\r\033[K" if self.tty else "") + line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()


def main(argv=None):
    cfg = resolve_config(argv)
    # -------------------------------------------------------------------------
    # device, precision, seed
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    cfg["device"] = cfg["device"] or ("cuda" if torch.cuda.is_available() else
                                      "mps" if torch.backends.mps.is_available() else "cpu")
    device = torch.device(cfg["device"])
    cfg["dtype"] = cfg["dtype"] or ("bf16" if device.type == "cuda" else "fp32")
    # deviation: bf16 through autocast (fp32 master weights, matmuls in bf16) rather than casting
    # every weight and activation to bf16 by hand as the official code does
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg["dtype"] == "bf16" \
        else nullcontext()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(cfg["seed"])

    # -------------------------------------------------------------------------
    # data
    train, test = data.load_task(cfg["task"], data_dir=cfg["data_dir"], seed=cfg["seed"])
    cfg["data_source"] = {"train": train.source, "test": test.source, "generated": train.generated}

    # -------------------------------------------------------------------------
    # model and optimisers
    # both models offer one interface: model(state, inputs, puzzle_ids) -> (state, logits, q),
    # initial_state, reset_state, halt, halt_loss, max_steps, num_params, puzzle_emb (README)
    Model, Config = MODELS[cfg["model"]]
    mcfg = Config(vocab_size=train.vocab_size, seq_len=train.inputs.shape[1],
                  hidden_size=cfg["hidden"], num_heads=cfg["heads"], num_layers=cfg["layers"],
                  mlp_t=cfg["net"] == "mlp", puzzle_emb_len=cfg["prefix_len"],
                  halt_exploration_prob=cfg["halt_explore"],
                  **{k: cfg[k] for k in RECURSION[cfg["model"]]})
    model = Model(mcfg).to(device)
    cfg["model_config"], cfg["params"] = asdict(mcfg), model.num_params()
    ema_model = copy.deepcopy(model) if cfg["ema"] else model
    opt = AdamATan2([p for name, p in model.named_parameters() if name != "puzzle_emb"],
                    lr=cfg["lr"], betas=(0.9, 0.95), weight_decay=cfg["weight_decay"])
    emb_opt = SignSGD([model.puzzle_emb], lr=cfg["emb_lr"], weight_decay=cfg["emb_weight_decay"])
    step_fn, eval_fn = supervision_step, ema_model
    if cfg["compile"]:  # static shapes: one graph for training, one per eval batch size
        step_fn = torch.compile(supervision_step, dynamic=False)
        eval_fn = torch.compile(ema_model, dynamic=False)

    os.makedirs(cfg["out"], exist_ok=True)
    log_file = open(os.path.join(cfg["out"], "log.txt"), "a")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    banner = [f"task {cfg['task']} | model {cfg['model']} ({cfg['net']}) | device {device} "
              f"{cfg['dtype']} | torch {torch.__version__} | git {git}",
              f"train: {train.source}", f"test:  {test.source}",
              "config: " + json.dumps({k: v for k, v in cfg.items()
                                       if k not in ("model_config", "data_source")}),
              f"params: {cfg['params']}"]
    if train.generated:
        banner.insert(1, "!! GENERATED data: not the benchmark; not comparable to the paper")
    for line in banner:
        print(line)
        log_file.write(line + "\n")
    if cfg["dry_run"]:
        return None

    # -------------------------------------------------------------------------
    # the carry: B slots, each holding one puzzle at some supervision step (official training loop,
    # spec trm.md §2.2). Every optimiser step advances every slot by one supervision step; slots
    # whose puzzle halted are refilled from the next batch. All slots start empty (halted).
    B = cfg["batch_size"]
    carry = dict(state=model.initial_state(B),
                 steps=torch.zeros(B, dtype=torch.long, device=device),
                 halted=torch.ones(B, dtype=torch.bool, device=device),
                 inputs=torch.zeros_like(train.inputs[:B], device=device),
                 labels=torch.zeros_like(train.labels[:B], device=device))
    puzzle_ids = torch.zeros(B, dtype=torch.long, device=device)  # Sudoku and Maze: one shared id
    start_step, history, evals = 0, [], []
    if cfg["resume"]:
        ckpt = torch.load(cfg["resume"], map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        ema_model.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        emb_opt.load_state_dict(ckpt["emb_opt"])
        carry, start_step = ckpt["carry"], ckpt["step"]
        history, evals = ckpt["history"], ckpt["evals"]
        torch.set_rng_state(ckpt["rng"]["cpu"])
        if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        print(f"resumed from {cfg['resume']} at step {start_step}")

    if cfg["eval_only"]:
        trained = model.max_steps
        counts = [int(k) for k in cfg["eval_steps"].split(",")] if cfg.get("eval_steps") else \
            [2 ** i for i in range(int(math.log2(2 * trained)) + 1)]
        table = test_time_scaling(eval_fn, test, cfg, counts, autocast)
        with open(os.path.join(cfg["out"], "scaling.csv"), "w") as f:
            f.write("mode,steps,mean_steps,net_calls,exact,puzzles\n")
            for r in table:
                f.write(f"{r['mode']},{r['steps']},{r['mean_steps']:.3f},{r['net_calls']:.1f},"
                        f"{r['exact']:.4f},{r['puzzles']}\n")
        plot_scaling(table, trained, os.path.join(cfg["out"], "scaling.png"),
                     f"{cfg['model']} on {cfg['task']}, step {start_step}" +
                     " (GENERATED data)" * train.generated)
        for r in table:
            print(f"scaling | {r['mode']:8s} | at most {r['steps']:4d} steps | mean "
                  f"{r['mean_steps']:7.2f} steps, {r['net_calls']:8.1f} net calls | test exact "
                  f"{r['exact']:.4f}")
        print(f"wrote {os.path.join(cfg['out'], 'scaling.csv')} and scaling.png")
        return table

    def train_step(step: int) -> dict:
        inputs, labels = get_batch(train, step, cfg)  # built on the CPU while the GPU works
        if device.type == "cuda":  # pinned memory: the copy does not wait for the GPU to finish
            inputs, labels = inputs.pin_memory(), labels.pin_memory()
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        # learning rate: linear warmup from step 1, then constant (official lr_min_ratio = 1)
        scale = min(1.0, (step + 1) / cfg["warmup"])
        opt.param_groups[0]["lr"] = cfg["lr"] * scale
        emb_opt.param_groups[0]["lr"] = cfg["emb_lr"] * scale
        # --grad-accum K: the B slots run as K micro-batches of B/K slots (each its own slice of
        # the carry), and their gradients add up to that of the whole batch
        K = cfg["grad_accum"]
        news, metrics = [], {}
        for part in (slice(k * B // K, (k + 1) * B // K) for k in range(K)):
            try:
                with autocast:
                    new, loss, m = step_fn(model, slots(carry, part), inputs[part], labels[part],
                                           puzzle_ids[part])
                (loss / K).backward()
            except torch.OutOfMemoryError:
                sys.exit(f"out of {device.type} memory with {B // K} slots per micro-batch: run "
                         f"with --grad-accum {2 * K} (the same training, in smaller pieces)")
            news.append(new)
            # sums over the slots, but the loss is a mean: average it over the micro-batches
            metrics = {name: metrics.get(name, 0) + (value / K if name == "loss" else value)
                       for name, value in m.items()}
        carry.update(news[0] if K == 1 else join_slots(news))
        opt.step()
        emb_opt.step()
        opt.zero_grad(set_to_none=True)
        emb_opt.zero_grad(set_to_none=True)
        if cfg["ema"]:
            ema_update(ema_model, model, cfg["ema"])
        return metrics

    if cfg["bench"]:
        for step in range(3):  # warm-up (and compilation)
            train_step(step)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.time()
        for step in range(3, 3 + cfg["bench"]):
            train_step(step)
        sync()
        dt = (time.time() - t0) / cfg["bench"]
        if device.type == "cuda":
            mem = f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        else:  # the whole process's peak resident memory (Linux reports KiB)
            import resource  # Unix only, so imported here
            mem = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
        flops, peak = flops_per_step(model, B), peak_flops(device)
        mfu = f"MFU {flops / dt / peak:.1%}" if peak and cfg["dtype"] == "bf16" else "MFU n/a"
        print(f"bench | {cfg['bench']} steps | {1 / dt:.2f} steps/s | {B / dt:.0f} samples/s | "
              f"{1000 * dt:.1f} ms/step | {flops / 1e12:.1f} TFLOP/step, {flops / dt / 1e12:.1f} "
              f"TFLOP/s, {mfu} | {mem} | projected {cfg['steps']} steps: "
              f"{fmt_time(dt * cfg['steps'])}")
        # evaluation throughput: --eval-limit test puzzles (0 = all), every one for all N_sup
        # steps; the first pass warms up (and compiles for each batch shape), the second is timed
        for _ in range(2):
            sync()
            t0 = time.time()
            result = evaluate(eval_fn, test, cfg, cfg["eval_limit"], autocast)
            dt = time.time() - t0
        full = len(test.inputs) / result["puzzles"] * dt
        print(f"bench | eval | {result['puzzles']} puzzles x {model.max_steps} steps, batch "
              f"{cfg['eval_batch_size']} | {result['puzzles'] / dt:.0f} puzzles/s | full test "
              f"split ({len(test.inputs)} puzzles): {fmt_time(full)}")
        return None

    # -------------------------------------------------------------------------
    # training loop
    def checkpoint(step: int):
        rng = dict(cpu=torch.get_rng_state(),
                   cuda=torch.cuda.get_rng_state() if device.type == "cuda" else None)
        save_checkpoint(os.path.join(cfg["out"], "ckpt.pt"), dict(
            model=model.state_dict(), ema=ema_model.state_dict(), opt=opt.state_dict(),
            emb_opt=emb_opt.state_dict(), config=cfg, step=step, carry=carry, rng=rng,
            history=history, evals=evals, generated=train.generated))

    progress = Progress(cfg["steps"], start_step, log_file, cfg["minutes"])
    sums, t_log = None, time.time()
    for step in range(start_step, cfg["steps"]):
        metrics = train_step(step)
        sums = metrics if sums is None else {k: sums[k] + metrics[k] for k in sums}
        progress.update(step + 1)
        last = step + 1 == cfg["steps"] or \
            (cfg["minutes"] is not None and time.time() - progress.t0 > 60 * cfg["minutes"])
        evaluating = (step + 1) % cfg["eval_every"] == 0 or last
        # log (and check the loss) before every eval, so a checkpoint is never written after a NaN
        if (step + 1) % cfg["log_every"] == 0 or evaluating:
            s = {k: v.item() for k, v in sums.items()}  # the only host sync of the loop
            if not math.isfinite(s["loss"]):
                path = os.path.join(cfg["out"], "ckpt.pt")
                kept = f"the last good checkpoint, {path}, is untouched" if os.path.exists(path) \
                    else "no checkpoint was written"
                progress.log(f"step {step + 1}: the loss is {s['loss']} (NaN/Inf). Stopping; "
                             f"{kept}. Try a lower --lr, or --dtype fp32.")
                sys.exit(1)
            n_log = (step + 1) - (history[-1]["step"] if history else start_step)
            done = max(s["halted"], 1)
            history.append(dict(step=step + 1, loss=s["loss"] / n_log, exact=s["exact"] / done,
                                cell=s["cell"] / done, halt_steps=s["steps"] / done,
                                steps_per_s=n_log / (time.time() - t_log)))
            h = history[-1]
            progress.log(f"step {h['step']:6d} | loss {h['loss']:.4f} | cell acc {h['cell']:.3f} | "
                         f"exact {h['exact']:.3f} | halt steps {h['halt_steps']:.1f} | "
                         f"{h['steps_per_s']:.2f} steps/s | ETA {progress.eta(step + 1)}")
            sums, t_log = None, time.time()
        if evaluating:
            # deviation: intermediate evals may use the first --eval-limit test puzzles (the
            # official code evaluates all 422,786 Sudoku puzzles every time); the final uses all
            result = evaluate(eval_fn, test, cfg, 0 if last else cfg["eval_limit"], autocast)
            evals.append(dict(step=step + 1, **result))
            progress.log(f"eval {step + 1:6d} | test exact {result['exact']:.4f} | cell "
                         f"{result['cell']:.4f} | {result['puzzles']} puzzles | "
                         f"{fmt_time(time.time() - progress.t0)} | exact after each supervision "
                         f"step {result['exact_by_step']}")
            checkpoint(step + 1)
            title = f"{cfg['model']} on {cfg['task']}" + " (GENERATED data)" * train.generated
            plot_curves(history, evals, os.path.join(cfg["out"], "curves.png"), title)
            t_log = time.time()
        if last:
            break

    final = evals[-1]
    elapsed = time.time() - progress.t0
    with open(os.path.join(cfg["out"], "results.json"), "w") as f:
        json.dump(dict(task=cfg["task"], model=cfg["model"], params=cfg["params"],
                       step=final["step"], test_exact=final["exact"], test_cell=final["cell"],
                       puzzles=final["puzzles"], exact_by_step=final["exact_by_step"],
                       wall_s=round(elapsed), generated=train.generated, data=cfg["data_source"],
                       device=str(device)), f, indent=1)
    progress.log(f"final | test exact acc {final['exact']:.4f} on {final['puzzles']} puzzles"
                 f"{' (GENERATED data)' if train.generated else ''} | {fmt_time(elapsed)}")
    return final


if __name__ == "__main__":
    main()
