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
    python train.py --model trm --task arc1              # TRM-Att, ARC-AGI-1 (paper: 44.6% pass@2)
    python train.py --model hrm --task arc1              # HRM, ARC-AGI-1 (paper: 40.3% pass@2)
    python train.py --task arc-mini                      # Mini-ARC's 5x5 tasks, on a CPU
Other modes:
    python train.py --task sudoku --dry-run              # build data and model, print config
    python train.py --task sudoku --bench 20             # time 20 optimiser steps
    python train.py --resume out/sudoku6-trm/ckpt.pt     # continue a killed run, same config
    python train.py --eval-only --resume out/sudoku6-trm/ckpt.pt --eval-steps 1,2,4,8,16,32
                                             # test-time scaling: accuracy vs supervision steps
Several GPUs (the global batch is split over them; see lib/parallel.py):
    torchrun --nproc-per-node 4 train.py --model trm --task maze
"""

import copy
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch

from lib import config
import data
from lib import official
from lib import parallel
from lib.bench import bench
from lib.config import RECURSION, fail, read_checkpoint, resolve_config
from lib.evaluate import eval_line, eval_only, evaluate, solve_mode, token_scores
from hrm import HRM, HRMConfig
from lib.optim import AdamATan2, SignSGD, ema_update
from lib.report import Progress, banner, claim_out, fmt_time, plot_curves
from trm import TRM, TRMConfig

MODELS = {"trm": (TRM, TRMConfig), "hrm": (HRM, HRMConfig)}
config.parser.description = __doc__  # --help starts with the usage above


# -----------------------------------------------------------------------------
# the loss (the optimisers are in lib/optim.py)

def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with stablemax instead of softmax (Prieto et al. 2025), in float64 as in the
    official code: s(v) = v + 1 for v >= 0, 1 / (1 - v) below, p_i = s(l_i) / sum_j s(l_j)."""
    x = logits.double()
    # clamp: the branch torch.where discards must stay finite, or its gradient (0 * inf at x = 1,
    # common for bf16 logits) is NaN; the official code adds 1e-30 to 1 - x for the same reason
    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))  # (B, S, V)
    picked = s.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)  # (B, S)
    return torch.log(s.sum(-1)) - torch.log(picked)  # (B, S)


# -----------------------------------------------------------------------------
# one step of deep supervision for every slot of the carry (official training loop, spec trm.md
# §2.2): halted slots are refilled with the new batch's puzzle (and its puzzle id) at their index
# and a fresh state, then every slot advances by one supervision step. Pure tensor code, no host
# syncs: this is the function that --compile compiles.

def supervision_step(model, carry: dict, inputs, labels, puzzle_ids):
    h = carry["halted"]  # (B,)
    state = model.reset_state(carry["state"], h)
    steps = torch.where(h, 0, carry["steps"])
    inputs = torch.where(h[:, None], inputs, carry["inputs"])  # (B, S)
    labels = torch.where(h[:, None], labels, carry["labels"])  # (B, S)
    puzzle_ids = torch.where(h, puzzle_ids, carry["puzzle_ids"])  # (B,) each keeps its own

    state, logits, q = model(state, inputs, puzzle_ids)
    steps = steps + 1
    halted = model.halt(q, steps)

    # loss: per-puzzle mean of the token losses, plus 0.5 * the halting head's loss (TRM: BCE of
    # "halt" against "my answer is exactly right"; HRM adds its Q-learning continue target),
    # averaged over all slots (official: summed, then divided by the global batch)
    # (PAD labels, ARC's canvas around a grid, carry no loss and no score: token_scores)
    exact, cell, valid = token_scores(logits, labels)  # (B,), (B,), (B, S)
    token_loss = stablemax_cross_entropy(logits, labels) * valid  # (B, S)
    lm_loss = token_loss.sum(-1) / valid.sum(-1).clamp(min=1)  # (B,)
    halt_loss = model.halt_loss(q, exact, state, inputs, puzzle_ids, steps)  # (B,)
    loss = (lm_loss.sum() + 0.5 * halt_loss.sum()) / len(inputs)

    # metrics of the puzzles that finished at this step (summed; divided at log time)
    done = halted.float()
    metrics = dict(loss=loss.detach(), halted=done.sum(), exact=(exact * done).sum(),
                   cell=(cell * done).sum(), steps=(steps * done).sum())
    carry = dict(state=state, steps=steps, halted=halted, inputs=inputs, labels=labels,
                 puzzle_ids=puzzle_ids)
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
# one run: everything the modes below share, built once by build_run

@dataclass
class Run:
    cfg: dict  # the resolved config (saved in every checkpoint)
    device: torch.device
    autocast: object  # bf16 autocast on CUDA, else a no-op context
    train: data.PuzzleSet
    test: data.PuzzleSet
    model: torch.nn.Module
    ema_model: torch.nn.Module  # the evaluated weights (the model itself when --ema 0)
    opt: AdamATan2  # the network's weights
    emb_opt: SignSGD  # the puzzle embedding
    step_fn: object  # supervision_step, compiled with --compile
    eval_fn: object  # ema_model, compiled with --compile
    carry: dict  # this rank's slots (all B in one process), each a puzzle at some supervision step
    log_file: object
    step: int = 0  # optimiser steps done
    history: list = field(default_factory=list)  # one dict per log line
    evals: list = field(default_factory=list)  # one dict per evaluation


def check_device(device: str | None):
    """None (the first available) or a device this machine has: cpu, cuda[:i], mps."""
    if device is None:
        return
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        fail(f"--device {device!r} is not one of cpu, cuda, cuda:N, mps")
    if kind == "cuda" and not torch.cuda.is_available():
        fail(f"--device {device}: this machine has no CUDA GPU that torch {torch.__version__} can "
             f"use; leave --device out (or say cpu)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        fail(f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not torch.backends.mps.is_available():
        fail("--device mps: this machine has no Apple GPU that torch can use; leave --device out")


def device_probes(device) -> dict:
    """What --bench asks of the device: wait for it, reset and read its peak memory, its name."""
    if device.type == "cuda":
        gib = lambda: torch.cuda.max_memory_allocated() / 2**30
        return dict(sync=torch.cuda.synchronize, reset=torch.cuda.reset_peak_memory_stats,
                    memory=lambda: f"peak memory {gib():.2f} GiB",
                    name=torch.cuda.get_device_name(device))
    import resource  # Unix only: the whole process's peak resident memory (Linux: KiB)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return dict(sync=lambda: None, reset=lambda: None, memory=lambda: f"peak RSS {rss():.2f} GiB",
                name="")


def setup_device(cfg: dict):
    """Threads, device (under torchrun: this rank's GPU), compute dtype and the seed; returns
    (device, autocast context)."""
    check_device(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    cfg["device"] = cfg["device"] or ("cuda" if torch.cuda.is_available() else
                                      "mps" if torch.backends.mps.is_available() else "cpu")
    local = parallel.start("nccl" if cfg["device"].startswith("cuda") else "gloo")
    cfg["ranks"] = parallel.world()
    if cfg["ranks"] > 1 and cfg["device"].startswith("cuda"):
        cfg["device"] = f"cuda:{local}"
        torch.cuda.set_device(local)
    device = torch.device(cfg["device"])
    cfg["dtype"] = cfg["dtype"] or ("bf16" if device.type == "cuda" else "fp32")
    # deviation: bf16 through autocast (fp32 master weights, matmuls in bf16) rather than casting
    # every weight and activation to bf16 by hand as the official code does
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg["dtype"] == "bf16" \
        else nullcontext()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(cfg["seed"])  # the same on every rank: the same initial weights
    return device, autocast


def new_carry(model, train, B: int, device) -> dict:
    """The carry (official training loop, spec trm.md §2.2): B slots, each holding one puzzle at
    some supervision step. Every optimiser step advances every slot by one supervision step; slots
    whose puzzle halted are refilled from the next batch. All slots start empty (halted)."""
    return dict(state=model.initial_state(B),
                steps=torch.zeros(B, dtype=torch.long, device=device),
                halted=torch.ones(B, dtype=torch.bool, device=device),
                inputs=torch.zeros(B, train.seq_len, dtype=torch.uint8, device=device),
                labels=torch.zeros(B, train.seq_len, dtype=torch.uint8, device=device),
                puzzle_ids=torch.zeros(B, dtype=torch.long, device=device))


def model_config(cfg: dict, train) -> tuple:
    """(model class, its config) for the run: from the flags and the training set, or with
    --official from the checkpoint's all_config.yaml (official.prepare)."""
    # both models offer one interface: model(state, inputs, puzzle_ids) -> (state, logits, q),
    # initial_state, reset_state, halt, halt_loss, max_steps, num_params, puzzle_emb (README)
    Model, Config = MODELS[cfg["model"]]
    if cfg.get("official"):  # the table's rows are the task's puzzle ids (ARC: the build's)
        return Model, Config(**{**cfg["model_config"], "num_puzzle_ids": train.num_puzzle_ids})
    return Model, Config(vocab_size=train.vocab_size, seq_len=train.seq_len,
                         num_puzzle_ids=train.num_puzzle_ids, hidden_size=cfg["hidden"],
                         num_heads=cfg["heads"], num_layers=cfg["layers"],
                         mlp_t=cfg["net"] == "mlp", puzzle_emb_len=cfg["prefix_len"],
                         halt_exploration_prob=cfg["halt_explore"],
                         **{k: cfg[k] for k in RECURSION[cfg["model"]]})


def ema_copy(model):
    """The model's EMA copy (optim.ema_update), sharing its puzzle-embedding table (~1M rows for
    ARC) instead of copying it."""
    return copy.deepcopy(model, memo={id(model.puzzle_emb): model.puzzle_emb})


def build_run(cfg: dict, device, autocast, train, test, log_file) -> Run:
    """The model, its EMA copy, the two optimisers and an empty carry."""
    Model, mcfg = model_config(cfg, train)
    model = Model(mcfg).to(device)
    parallel.same_weights(model)
    if parallel.rank() > 0:  # from here on random draws (halting exploration) differ by rank
        torch.manual_seed(cfg["seed"] + parallel.rank())
    cfg["model_config"], cfg["params"] = asdict(mcfg), model.num_params()
    ema_model = ema_copy(model) if cfg["ema"] else model
    opt = AdamATan2([p for name, p in model.named_parameters() if name != "puzzle_emb"],
                    lr=cfg["lr"], betas=(0.9, 0.95), weight_decay=cfg["weight_decay"])
    emb_opt = SignSGD([model.puzzle_emb], lr=cfg["emb_lr"], weight_decay=cfg["emb_weight_decay"])
    step_fn, eval_fn = supervision_step, ema_model
    if cfg["compile"]:  # static shapes: one graph for training, one per eval batch size
        step_fn = torch.compile(supervision_step, dynamic=False)
        eval_fn = torch.compile(ema_model, dynamic=False)
    B = cfg["batch_size"] // parallel.world()  # this rank's slots
    return Run(cfg, device, autocast, train, test, model, ema_model, opt, emb_opt, step_fn,
               eval_fn, carry=new_carry(model, train, B, device), log_file=log_file)


# -----------------------------------------------------------------------------
# checkpoints: everything needed to go on as if never stopped

def save_checkpoint(run: Run):
    """Called on every rank: the whole carry and each rank's random state go to rank 0, which
    writes the file."""
    carry = parallel.gather_slots(run.carry)
    rng = parallel.gather_objects(dict(
        cpu=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state() if run.device.type == "cuda" else None))
    if not parallel.is_main():
        return
    # the EMA weights without the puzzle-embedding table, which both models share: it is saved
    # once, with the model (ARC: 1.8-2.5 GB)
    ema = {k: v for k, v in run.ema_model.state_dict().items() if k != "puzzle_emb"}
    ckpt = dict(model=run.model.state_dict(), ema=ema,
                opt=run.opt.state_dict(), emb_opt=run.emb_opt.state_dict(), config=run.cfg,
                step=run.step, carry=carry, rng=rng, history=run.history, evals=run.evals,
                generated=run.train.generated)
    # write to a temporary file and rename: a crash mid-write never leaves a broken checkpoint
    path = os.path.join(run.cfg["out"], "ckpt.pt")
    torch.save(ckpt, path + ".tmp")
    os.replace(path + ".tmp", path)


def ema_weights(ckpt: dict) -> dict:
    """The evaluated (EMA) weights of a checkpoint, as a full state dict: the puzzle-embedding
    table, which the EMA model shares, is stored once, with the model's weights."""
    return {"puzzle_emb": ckpt["model"]["puzzle_emb"], **ckpt["ema"]}


def load_checkpoint(run: Run, path: str):
    ckpt = read_checkpoint(path, map_location=run.device)
    run.model.load_state_dict(ckpt["model"])
    run.ema_model.load_state_dict(ema_weights(ckpt))
    run.opt.load_state_dict(ckpt["opt"])
    run.emb_opt.load_state_dict(ckpt["emb_opt"])
    run.step, run.history, run.evals = ckpt["step"], ckpt["history"], ckpt["evals"]
    print(f"resumed from {path} at step {run.step}")
    if run.cfg["eval_only"]:  # evaluation starts from fresh states: any number of ranks will do
        return
    run.carry = slots(ckpt["carry"], parallel.my_slots(run.cfg["batch_size"]))
    rng = ckpt["rng"][parallel.rank()]  # config.resumed made sure the rank count is the same
    torch.set_rng_state(rng["cpu"])
    if run.device.type == "cuda" and rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"])


# -----------------------------------------------------------------------------
# training

def train_step(run: Run, step: int) -> dict:
    """One optimiser step: every slot of the carry advances by one supervision step."""
    cfg, device = run.cfg, run.device
    mine = parallel.my_slots(cfg["batch_size"])  # under torchrun: this rank's part of the batch
    batch = data.get_batch(run.train, step, cfg["batch_size"], cfg["seed"], cfg["augment"],
                           mine)  # inputs, labels (B, S), puzzle ids (B,)
    if device.type == "cuda":  # pinned memory: the copy does not wait for the GPU to finish
        batch = [t.pin_memory() for t in batch]
    inputs, labels, ids = (t.to(device, non_blocking=True) for t in batch)
    B = mine.stop - mine.start
    # learning rate: linear warmup from step 1, then constant (official lr_min_ratio = 1)
    scale = min(1.0, (step + 1) / cfg["warmup"])
    run.opt.param_groups[0]["lr"] = cfg["lr"] * scale
    run.emb_opt.param_groups[0]["lr"] = cfg["emb_lr"] * scale
    # --grad-accum K: the B slots run as K micro-batches of B/K slots (each its own slice of the
    # carry), and their gradients add up to that of the whole batch
    K = cfg["grad_accum"]
    news, metrics = [], {}
    for part in (slice(k * B // K, (k + 1) * B // K) for k in range(K)):
        try:
            with run.autocast:
                new, loss, m = run.step_fn(run.model, slots(run.carry, part), inputs[part],
                                           labels[part], ids[part])
            (loss / K).backward()
        except torch.OutOfMemoryError:
            sys.exit(f"out of {device.type} memory with {B // K} slots per micro-batch: run "
                     f"with --grad-accum {2 * K} (the same training, in smaller pieces)")
        news.append(new)
        # sums over the slots, but the loss is a mean: average it over the micro-batches
        metrics = {name: metrics.get(name, 0) + (value / K if name == "loss" else value)
                   for name, value in m.items()}
    run.carry.update(news[0] if K == 1 else join_slots(news))
    parallel.average_gradients(run.model)  # every rank then takes the same step
    for opt in (run.opt, run.emb_opt):
        opt.step()
    for opt in (run.opt, run.emb_opt):
        opt.zero_grad(set_to_none=True)
    if cfg["ema"]:
        ema_update(run.ema_model, run.model, cfg["ema"])
    return metrics


def all_finite(module) -> bool:
    return all(torch.isfinite(t).all() for t in module.state_dict().values()
               if t.is_floating_point())


def stop_not_finite(run: Run, progress: Progress, what: str):
    """Stop on NaN/Inf before anything is checkpointed: every checkpoint written is finite."""
    path = os.path.join(run.cfg["out"], "ckpt.pt")
    kept = f"the last good checkpoint, {path}, is untouched" if os.path.exists(path) \
        else "no checkpoint was written"
    progress.log(f"step {run.step}: {what} (NaN/Inf). Stopping; {kept}. Try a lower --lr, or "
                 f"--dtype fp32.")
    sys.exit(1)


def log_metrics(run: Run, sums: dict, t_log: float, progress: Progress):
    """Average the summed metrics since the last log line into run.history and log them; stop
    on a NaN/Inf loss before anything is checkpointed."""
    sums = parallel.sum_over_ranks(sums)  # under torchrun: all slots, not just this rank's
    s = {k: v.item() for k, v in sums.items()}  # the only host sync of the loop
    s["loss"] /= parallel.world()  # each rank's loss is a mean over its slots
    if not math.isfinite(s["loss"]):
        stop_not_finite(run, progress, f"the loss is {s['loss']}")
    n_log = run.step - (run.history[-1]["step"] if run.history else progress.start)
    done = max(s["halted"], 1)
    run.history.append(dict(step=run.step, loss=s["loss"] / n_log, exact=s["exact"] / done,
                            cell=s["cell"] / done, halt_steps=s["steps"] / done,
                            steps_per_s=n_log / (time.time() - t_log)))
    h = run.history[-1]
    progress.log(f"step {h['step']:6d} | loss {h['loss']:.4f} | cell acc {h['cell']:.3f} | "
                 f"exact {h['exact']:.3f} | halt steps {h['halt_steps']:.1f} | "
                 f"{h['steps_per_s']:.2f} steps/s | ETA {progress.eta(run.step)}")


def evaluate_and_save(run: Run, last: bool, progress: Progress):
    """Evaluate the EMA weights, log the result, checkpoint, and redraw curves.png."""
    # deviation: intermediate evals may use the first --eval-limit test puzzles (the official
    # code evaluates all 422,786 Sudoku puzzles every time); the final one uses all
    cfg = run.cfg
    if not (all_finite(run.model) and all_finite(run.ema_model)):  # the loss was checked before
        stop_not_finite(run, progress, "the weights after the last optimiser step are not finite")
    result = evaluate(run.eval_fn, run.test, cfg, 0 if last else cfg["eval_limit"], run.autocast)
    submission = result.pop("submission", None)  # ARC: the Kaggle submission.json
    run.evals.append(dict(step=run.step, **result))
    progress.log(eval_line(run.step, result, fmt_time(time.time() - progress.t0)))
    if submission is not None and parallel.is_main():
        with open(os.path.join(cfg["out"], "submission.json"), "w") as f:
            json.dump(submission, f)
    save_checkpoint(run)
    if parallel.is_main():
        title = f"{cfg['model']} on {cfg['task']}" + " (GENERATED data)" * run.train.generated
        plot_curves(run.history, run.evals, os.path.join(cfg["out"], "curves.png"), title)


def train_loop(run: Run) -> dict:
    """Optimiser steps up to --steps (or --minutes), a log line every --log-every steps, an
    evaluation and checkpoint every --eval-every steps and at the end; returns the final eval."""
    cfg = run.cfg
    progress = Progress(cfg["steps"], run.step, run.log_file, cfg["minutes"])
    sums, t_log = None, time.time()
    while run.step < cfg["steps"]:
        metrics = train_step(run, run.step)
        run.step += 1
        sums = metrics if sums is None else {k: sums[k] + metrics[k] for k in sums}
        progress.update(run.step)
        out_of_time = progress.out_of_time()
        if parallel.world() > 1:  # the ranks' clocks differ: stop together, on rank 0's
            out_of_time = (run.step % cfg["log_every"] == 0
                           and parallel.rank0_says(out_of_time, run.device))
        last = run.step == cfg["steps"] or out_of_time
        evaluating = run.step % cfg["eval_every"] == 0 or last
        # log (and check the loss) before every eval, so a checkpoint is never written after a NaN
        if run.step % cfg["log_every"] == 0 or evaluating:
            log_metrics(run, sums, t_log, progress)
            sums, t_log = None, time.time()
        if evaluating:
            evaluate_and_save(run, last, progress)
            t_log = time.time()
        if last:
            break
    final, elapsed = run.evals[-1], time.time() - progress.t0
    if not parallel.is_main():
        return final
    with open(os.path.join(cfg["out"], "results.json"), "w") as f:
        json.dump(dict(task=cfg["task"], model=cfg["model"], params=cfg["params"],
                       step=final["step"], test_exact=final["exact"], test_cell=final["cell"],
                       puzzles=final["puzzles"], exact_by_step=final["exact_by_step"],
                       wall_s=round(elapsed), generated=run.train.generated,
                       data=cfg["data_source"], device=str(run.device), ranks=cfg["ranks"],
                       **({"pass_at": final["pass_at"]} if "pass_at" in final else {})),
                  f, indent=1)
    if "pass_at" in final:  # ARC: the voted answers
        p = final["pass_at"]["trm"]
        score = f"test pass@2 {p[2]:.4f}, pass@1 {p[1]:.4f} (voted over {final['puzzles']} copies)"
    else:
        score = f"test exact acc {final['exact']:.4f} on {final['puzzles']} puzzles"
    progress.log(f"final | {score}{' (GENERATED data)' if run.train.generated else ''} | "
                 f"{fmt_time(elapsed)}")
    return final


def load_data(cfg: dict, log_file):
    """The task's (train, test) sets; what loading says (a download, a fallback and why) goes to
    the terminal and to log.txt, and a bad data file is a user error, told in one line."""
    def log(line: str):
        print(line)
        log_file.write(line + "\n")

    try:
        train, test = data.load_task(cfg["task"], data_dir=cfg["data_dir"], seed=cfg["seed"],
                                     log=log, num_aug=cfg.get("num_aug"))
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    cfg["data_source"] = {"train": train.source, "test": test.source, "generated": train.generated,
                          "sha256": {"train": train.meta["sha256"], "test": test.meta["sha256"]}}
    return train, test


def main(argv=None):
    cfg = resolve_config(argv)
    if cfg.get("official"):
        official.prepare(cfg)
    device, autocast = setup_device(cfg)
    if not parallel.is_main():  # under torchrun rank 0 speaks for all and writes every file
        sys.stdout = open(os.devnull, "w")
    with claim_out(cfg["out"]) if parallel.is_main() else open(os.devnull, "w") as log_file:
        with parallel.main_first():  # rank 0 downloads or generates, the others read its cache
            train, test = load_data(cfg, log_file)
        run = build_run(cfg, device, autocast, train, test, log_file)
        for line in banner(run.cfg, run.train, run.test, run.device):
            print(line)
            log_file.write(line + "\n")
        if cfg["dry_run"]:
            return None
        if cfg["resume"]:
            load_checkpoint(run, cfg["resume"])
        if cfg.get("official"):
            official.load_weights(run.model, cfg["official_file"])
            run.step = cfg["official_step"]
        if cfg.get("solve"):
            return solve_mode(run)
        if cfg["eval_only"]:
            return eval_only(run)
        if cfg["bench"]:
            return bench(run, train_step, device_probes(device))
        return train_loop(run)


if __name__ == "__main__":
    main()
    parallel.stop()  # under torchrun: all ranks leave together, or a rank's exit can abort
