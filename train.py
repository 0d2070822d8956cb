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

import math
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

import data
from lib import checkpoint, config, official, parallel
from lib.bench import bench, check_step_memory, say_cost
from lib.config import fail, model_config, resolve_config, sized_config
from lib.cpu import keep_freed_memory, leave_busy_cores
from lib.evaluate import eval_line, evaluate, solve_mode
from lib.optim import AdamATan2, SignSGD, ema_copy, ema_update
from lib.report import (Progress, banner, claim_out, fmt_time, heartbeat, plot_curves, write_json,
                        write_results)
from lib.scaling import check_memory, eval_only

config.parser.description = __doc__  # --help starts with the usage above


# -----------------------------------------------------------------------------
# deep supervision, as the TRM paper writes it (Fig. 3): read this first

def paper_loop(model, optimizers: list, inputs, labels, puzzle_ids) -> list:
    """Train on one batch the way the paper's pseudocode does; returns each step's loss.

        for x_input, y_true in train_dataloader:
            y, z = y_init, z_init
            for step in range(N_supervision):
                (y, z), y_hat, q_hat = deep_recursion(x, y, z)
                loss = CE(y_hat, y_true) + 0.5 * BCE(q_hat, y_hat == y_true)
                loss.backward(); opt.step(); opt.zero_grad()
                if q_hat > 0: break          # early stopping: "my answer is right"

    The halting term weighs 0.5, as in the official code (losses.py: lm_loss + 0.5 * (q_halt_loss
    + q_continue_loss)); the paper's Fig. 3 writes no weight. The state (y, z) goes on from step
    to step, detached: every supervision step is trained as its own short problem. A puzzle stops
    when its halting head says so (a batch: each puzzle on its own; the batch ends when all have
    stopped). train.py trains with supervision_step below, which never waits for a batch's last
    puzzle: a halted puzzle's slot takes a new puzzle at once. So each puzzle goes through the
    same supervision steps as here (the same states, logits and losses, and it halts at the same
    step), but an optimiser step averages the gradients of whichever puzzles share it.
    tests/test_train.py checks both: per puzzle with mixed halting, and loss and gradient of every
    optimiser step when all puzzles halt together."""
    B = len(inputs)
    state = model.initial_state(B)  # y, z = y_init, z_init
    running = torch.ones(B, dtype=torch.bool, device=inputs.device)  # not halted yet
    losses = []
    for step in range(1, model.max_steps + 1):
        state, logits, q = model(state, inputs, puzzle_ids)  # deep_recursion
        steps = torch.full((B,), step, device=inputs.device)
        # HRM (and TRM --act-continue) also learn Q(continue): its target takes one more forward
        target = model.continue_target(state, inputs, puzzle_ids, steps) \
            if model.learns_continue else None
        answer, halting, _, _ = loss_terms(logits, q, labels, target)  # CE, BCE per puzzle (B,)
        loss = ((answer + 0.5 * halting) * running).sum() / B  # halted puzzles add nothing
        loss.backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad()
        losses.append(loss.item())
        running = running & ~model.wants_to_halt(q)  # if q_hat > 0: break
        if not running.any():
            break
    return losses


# -----------------------------------------------------------------------------
# the loss, all of it: the answer's, the exactness it is scored by, and the halting head's

def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with stablemax instead of softmax (Prieto et al. 2025), in float64 as in the
    official code: s(v) = v + 1 for v >= 0, 1 / (1 - v) below, p_i = s(l_i) / sum_j s(l_j)."""
    x = logits.double()
    # clamp: the branch torch.where discards must stay finite, or its gradient (0 * inf at x = 1,
    # common for bf16 logits) is NaN; the official code adds 1e-30 to 1 - x for the same reason
    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))  # (B, S, V)
    picked = s.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)  # (B, S)
    return torch.log(s.sum(-1)) - torch.log(picked)  # (B, S)


def loss_terms(logits, q, labels, continue_target=None) -> tuple:
    """The loss terms of one supervision step, per puzzle (B,), and its scores (B,).

    answer: the mean token loss over the labelled cells (PAD labels, ARC's canvas around a grid,
      carry none);
    halting: BCE of the halt logit against "the answer is exactly right"; with a continue target
      (HRM, TRM --act-continue: q is (B, 2)) plus BCE of the continue logit against it;
    exact, cell: is the answer exactly right, the fraction of its cells that are (data.scores,
      which the evaluation shares)."""
    valid = labels != data.IGNORE  # (B, S)
    token_loss = stablemax_cross_entropy(logits, labels) * valid  # (B, S)
    answer = token_loss.sum(-1) / valid.sum(-1).clamp(min=1)  # (B,)
    exact, cell = data.scores(logits, labels)  # (B,), (B,)
    bce = F.binary_cross_entropy_with_logits
    if continue_target is None:
        halting = bce(q, exact.float(), reduction="none")  # (B,)
    else:
        halting = bce(q[:, 0], exact.float(), reduction="none") + \
            bce(q[:, 1], continue_target, reduction="none")  # (B,)
    return answer, halting, exact, cell


# -----------------------------------------------------------------------------
# deep supervision as the official code runs it: a carry of B batch slots, each holding one
# puzzle at some supervision step. Every optimiser step advances every slot by one supervision
# step; a slot whose puzzle halted takes the next batch's puzzle at its index (and its puzzle id)
# and starts from a fresh state. For the slots of a puzzle this is exactly paper_loop, but no
# slot waits for the slowest puzzle of its batch. Pure tensor code, no host syncs: this is the
# function that --compile compiles.

def supervision_step(model, carry: dict, inputs, labels, puzzle_ids):
    h = carry["halted"]  # (B,)
    state = model.reset_state(carry["state"], h)
    steps = torch.where(h, 0, carry["steps"])
    inputs = torch.where(h[:, None], inputs, carry["inputs"])  # (B, S)
    labels = torch.where(h[:, None], labels, carry["labels"])  # (B, S)
    puzzle_ids = torch.where(h, puzzle_ids, carry["puzzle_ids"])  # (B,) each keeps its own

    state, logits, q = model(state, inputs, puzzle_ids)  # forward: one supervision step
    steps = steps + 1
    halted = model.halt(q, steps)
    # HRM (and TRM --act-continue) learn Q(continue) by Q-learning; its target is the value of
    # the next step, read from one more forward step without gradient: the step's forward twice
    target = model.continue_target(state, inputs, puzzle_ids, steps) \
        if model.learns_continue else None
    answer, halting, exact, cell = loss_terms(logits, q, labels, target)  # (B,) each
    # averaged over all slots (official: summed, then divided by the global batch); halting
    # weighs 0.5 as in the official code (see paper_loop)
    loss = (answer.sum() + 0.5 * halting.sum()) / len(inputs)

    # metrics of the puzzles that finished at this step (summed; divided at log time)
    done = halted.float()
    metrics = dict(loss=loss.detach(), halted=done.sum(), exact=(exact * done).sum(),
                   cell=(cell * done).sum(), steps=(steps * done).sum())
    carry = dict(state=state, steps=steps, halted=halted, inputs=inputs, labels=labels,
                 puzzle_ids=puzzle_ids)
    return carry, loss, metrics


def new_carry(model, train, B: int, device) -> dict:
    """B empty slots (all halted), so that the first step fills every one from its batch."""
    return dict(state=model.initial_state(B),
                steps=torch.zeros(B, dtype=torch.long, device=device),
                halted=torch.ones(B, dtype=torch.bool, device=device),
                inputs=torch.zeros(B, train.seq_len, dtype=torch.uint8, device=device),
                labels=torch.zeros(B, train.seq_len, dtype=torch.uint8, device=device),
                puzzle_ids=torch.zeros(B, dtype=torch.long, device=device))


# -----------------------------------------------------------------------------
# one optimiser step

def train_step(run, step: int) -> dict:
    """One optimiser step: every slot of the carry advances by one supervision step."""
    inputs, labels, puzzle_ids = batch_on_device(run, step)  # (B, S), (B, S), (B,)
    set_learning_rate(run, step)
    if run.cfg["grad_accum"] == 1:
        with run.autocast, out_of_memory_hint(run.device, len(inputs), 1):
            run.carry, loss, metrics = run.step_fn(run.model, run.carry, inputs, labels,
                                                   puzzle_ids)  # forward and loss
            loss.backward()
    else:  # --grad-accum: the same step in micro-batches, for less memory
        metrics = micro_batches(run, inputs, labels, puzzle_ids)
    if run.cfg["ranks"] > 1:  # under torchrun: every rank takes the same step
        parallel.average_gradients(run.model)
    for opt in (run.opt, run.emb_opt):
        opt.step()  # AdamATan2 on the weights, SignSGD on the puzzle embedding
        opt.zero_grad(set_to_none=True)
    if run.cfg["ema"]:
        ema_update(run.ema_model, run.model, run.cfg["ema"])  # ema <- r ema + (1 - r) weights
    return metrics


# the helpers a reader of one step may skip

def batch_on_device(run, step: int) -> list:
    """Step `step`'s batch (under torchrun: this rank's slots of it), on the device; on CUDA
    through pinned memory, so that the copy does not wait for the GPU."""
    B = run.cfg["batch_size"]
    mine = parallel.my_slots(B) if run.cfg["ranks"] > 1 else slice(None)
    batch = run.train.batch(step, B, run.cfg["seed"], run.cfg["augment"], mine)
    if run.device.type == "cuda":
        batch = [t.pin_memory() for t in batch]
    return [t.to(run.device, non_blocking=True) for t in batch]


def set_learning_rate(run, step: int):
    """Linear warmup from step 1, then constant (official lr_min_ratio = 1)."""
    scale = min(1.0, (step + 1) / run.cfg["warmup"])
    run.opt.param_groups[0]["lr"] = run.cfg["lr"] * scale
    run.emb_opt.param_groups[0]["lr"] = run.cfg["emb_lr"] * scale


def micro_batches(run, inputs, labels, puzzle_ids) -> dict:
    """--grad-accum A: the B slots as A consecutive slices, each run with its slice of the carry;
    their gradients add up to the whole batch's (each loss / A). Returns the step's metrics."""
    B, A = len(inputs), run.cfg["grad_accum"]
    carries, metrics = [], []
    for part in (slice(a * B // A, (a + 1) * B // A) for a in range(A)):
        with run.autocast, out_of_memory_hint(run.device, B // A, A):
            carry, loss, m = run.step_fn(run.model, parallel.slots(run.carry, part),
                                         inputs[part], labels[part], puzzle_ids[part])
            (loss / A).backward()
        carries.append(carry)
        metrics.append(m)
    run.carry = parallel.join_slots(carries)
    # sums over the slots, but the loss is a mean: average it over the micro-batches
    return {k: sum(m[k] for m in metrics) / (A if k == "loss" else 1) for k in metrics[0]}


@contextmanager
def out_of_memory_hint(device, slots_per_part: int, accum: int):
    """Turn running out of device memory into one line that says what to do."""
    try:
        yield
    except torch.OutOfMemoryError:
        sys.exit(f"out of {device.type} memory with {slots_per_part} slots per micro-batch: run "
                 f"with --grad-accum {2 * accum} (the same training, in smaller pieces)")


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
    """What --bench and --trajectories ask of the device: wait for it, reset and read its peak
    memory, its name, and its memory in all (bytes, whose): a CUDA GPU's own, else the machine's
    (which Apple's GPU shares)."""
    if device.type == "cuda":
        gib = lambda: torch.cuda.max_memory_allocated() / 2**30
        return dict(sync=torch.cuda.synchronize, reset=torch.cuda.reset_peak_memory_stats,
                    memory=lambda: f"peak memory {gib():.2f} GiB", matmul_size=8192,
                    name=torch.cuda.get_device_name(device),
                    total=(torch.cuda.get_device_properties(device).total_memory, "this GPU's"))
    import resource  # Unix only: the whole process's peak resident memory (Linux: KiB)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return dict(sync=lambda: None, reset=lambda: None, memory=lambda: f"peak RSS {rss():.2f} GiB",
                matmul_size=2048,
                name="", total=(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                                "this machine's"))


def setup_device(cfg: dict):
    """Threads, device (under torchrun: this rank's GPU), compute dtype and the seed; returns
    (device, autocast context)."""
    check_device(cfg["device"])
    cfg["device"] = cfg["device"] or ("cuda" if torch.cuda.is_available() else
                                      "mps" if torch.backends.mps.is_available() else "cpu")
    if cfg["device"] == "cpu":
        keep_freed_memory()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    elif cfg["device"] == "cpu":
        leave_busy_cores()
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


def random_state(device) -> dict:
    """This process's random state: the CPU generator's, and the GPU's on CUDA."""
    return dict(cpu=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state() if device.type == "cuda" else None)


def restore_random_state(device, rng: dict):
    torch.set_rng_state(rng["cpu"])
    if device.type == "cuda" and rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"])


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
# training

def log_metrics(run: Run, sums: dict, t_log: float, progress: Progress):
    """Average the summed metrics since the last log line into run.history and log them; stop
    on a NaN/Inf loss before anything is checkpointed."""
    sums = parallel.sum_over_ranks(sums)  # under torchrun: all slots, not just this rank's
    s = {k: v.item() for k, v in sums.items()}  # the only host sync of the loop
    s["loss"] /= parallel.world()  # each rank's loss is a mean over its slots
    if not math.isfinite(s["loss"]):
        checkpoint.stop_not_finite(run, progress, f"the loss is {s['loss']}")
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
    # the loss was checked before; the weights after the last optimiser step are checked here
    if not all(checkpoint.all_finite(m) for m in (run.model, run.ema_model)):
        checkpoint.stop_not_finite(run, progress,
                                   "the weights after the last optimiser step are not finite")
    result = evaluate(run.eval_fn, run.test, cfg, 0 if last else cfg["eval_limit"], run.autocast)
    files = result.pop("files", {})  # what a task writes at each evaluation (ARC: submission.json)
    run.evals.append(dict(step=run.step, **result))
    progress.log(eval_line(run.step, result, fmt_time(time.time() - progress.t0)))
    if parallel.is_main():
        write_json(cfg["out"], files)
    checkpoint.save(run, random_state(run.device))
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
    progress.log(write_results(run, final, elapsed))
    return final


def load_data(cfg: dict, log_file):
    """The task's (train, test) sets; what loading says (a download, a fallback and why) goes to
    the terminal and to log.txt, and a bad data file is a user error, told in one line."""
    def log(line: str):
        print(line)
        log_file.write(line + "\n")

    try:
        train, test = data.load_task(cfg["task"], data_dir=cfg["data_dir"],
                                     seed=cfg.get("data_seed", cfg["seed"]), log=log,
                                     num_aug=cfg.get("num_aug"))
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    cfg["data_source"] = {"train": train.source, "test": test.source, "generated": train.generated,
                          "sha256": {"train": train.meta["sha256"], "test": test.meta["sha256"]}}
    return train, test


def main(argv=None):
    cfg = resolve_config(argv)
    if cfg.get("official"):
        official.prepare(cfg)
    if cfg["resume"]:  # its weights must fit the model its config builds, told before any data
        # is loaded: the data's sizes (vocab, cells, puzzle ids) are those it was trained with
        checkpoint.check_fits(cfg["resume"], *sized_config(cfg))
    device, autocast = setup_device(cfg)
    probes = device_probes(device)
    check_memory(cfg, *probes["total"])
    if not parallel.is_main():  # under torchrun rank 0 speaks for all and writes every file
        sys.stdout = open(os.devnull, "w")
    with claim_out(cfg["out"]) if parallel.is_main() else open(os.devnull, "w") as log_file:
        Model, mcfg = sized_config(cfg)
        with torch.device("meta"):  # sizes, no weights: a run that is long here says so first
            step_s = say_cost(cfg, Model(mcfg), device, probes, log_file)
        with parallel.main_first():  # rank 0 downloads or generates, the others read its cache
            train, test = load_data(cfg, log_file)
        run = build_run(cfg, device, autocast, train, test, log_file)
        for line in banner(run.cfg, run.train, run.test, run.device):
            print(line)
            log_file.write(line + "\n")
        if cfg["dry_run"]:
            return None
        if step_s:  # a long run: can a micro-batch hold what its backward needs?
            check_step_memory(run, supervision_step, *probes["total"])
        if cfg["resume"]:
            rng = checkpoint.load(run, cfg["resume"])
            if rng is not None:  # this rank's random state, to go on as if never stopped
                restore_random_state(run.device, rng)
        if cfg.get("official"):
            file = cfg["official_file"]
            official.load(run.model, official.read_state_dict(file), f"--official {file}")
            run.step = cfg["official_step"]
        if cfg.get("solve"):
            return solve_mode(run)
        if cfg["eval_only"]:
            return eval_only(run)
        if cfg["bench"]:
            return bench(run, train_step, probes)
        with heartbeat(run, step_s) if step_s else nullcontext():  # a slow step shows it runs
            return train_loop(run)


if __name__ == "__main__":
    main()
    parallel.stop()  # under torchrun: all ranks leave together, or a rank's exit can abort
