"""What a run shows a person: times, the progress bar with ETA, the log file and the plots.
matplotlib is imported inside the plot functions (and draws on a Figure, not pyplot, so a
notebook's backend stays as it is)."""
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import torch

from lib.config import fail


def fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def fmt_duration(seconds: float) -> str:
    """fmt_time up to two days, then days, then years: a projection can be any of them."""
    if seconds < 2 * 86400:
        return fmt_time(seconds)
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365.25 * 86400):,.1f} years"


class Progress:
    """A one-line progress bar with ETA on a terminal; log lines are printed above it and
    appended to the log file."""

    def __init__(self, total: int, start: int, log_file, minutes=None):
        self.total, self.start, self.t0, self.last = total, start, time.time(), 0.0
        self.tty, self.log_file = sys.stdout.isatty(), log_file
        self.budget = 60 * minutes if minutes is not None else float("inf")  # --minutes

    def eta(self, step: int) -> str:
        done, elapsed = step - self.start, time.time() - self.t0
        if not done:
            return "?"
        return fmt_time(max(0, min(elapsed / done * (self.total - step), self.budget - elapsed)))

    def out_of_time(self) -> bool:
        return time.time() - self.t0 > self.budget

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


@contextmanager
def heartbeat(run, step_s: float, first: float = 5.0):
    """While a slow first step runs, a line after `first` seconds and again each time the wait has
    doubled: how long the step has run and how long it is projected to take (step_s), until the
    run's step count moves and the progress bar and log lines take over. A terminal thus shows
    within seconds that the run is alive. The lines go to stdout only, not to log.txt."""
    start, t0, stop = run.step, time.time(), threading.Event()

    def beat():
        wait = first
        while not stop.wait(max(0.0, t0 + wait - time.time())) and run.step == start:
            print(("\r\033[K" if sys.stdout.isatty() else "") + f"step {start + 1} running | "
                  f"{fmt_time(time.time() - t0)} so far of about {fmt_duration(step_s)}",
                  flush=True)
            wait *= 2

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def claim_out(out: str):
    """Create the output folder and open its log.txt, before any slow work, locked for this run
    (flock): a second run into the same folder is refused. The lock ends with the process however
    it ends, so a killed run leaves nothing stale. Returns the open log file."""
    try:
        os.makedirs(out, exist_ok=True)
        log_file = open(os.path.join(out, "log.txt"), "a")
    except OSError as e:
        fail(f"--out {out} cannot hold the run's files ({e.strerror}): give a writable folder")
    try:
        import fcntl  # Unix and macOS; elsewhere two runs into one --out are not caught
        fcntl.flock(log_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass
    except BlockingIOError:
        fail(f"--out {out} is in use by another run (it holds {out}/log.txt): wait for that run "
             f"to end, or give another --out")
    return log_file


def plot_curves(history: list, evals: list, path: str, title: str):
    """Training loss, train accuracy and test exact accuracy against optimiser steps."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot([h["step"] for h in history], [h["loss"] for h in history])
    ax_loss.set(xlabel="optimiser step", ylabel="train loss", yscale="log", title="loss")
    steps = [h["step"] for h in history]
    ax_acc.plot(steps, [h["exact"] for h in history], label="train exact (halted)")
    ax_acc.plot(steps, [h["cell"] for h in history], label="train cell", alpha=0.6)
    ax_acc.plot([e["step"] for e in evals], [e["exact"] for e in evals], "o-",
                label="test exact (EMA)" + " per augmented copy" * ("pass_at" in evals[-1]))
    if "pass_at" in evals[-1]:  # ARC: the voted answers, the paper's metric
        for k, style in ((1, "s-"), (2, "D-")):
            ax_acc.plot([e["step"] for e in evals], [e["pass_at"]["trm"][k] for e in evals],
                        style, label=f"test pass@{k} (voted)")
    ax_acc.set(xlabel="optimiser step", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _scaling_axes(title: str, size=(6.5, 4)):
    from matplotlib.figure import Figure
    fig = Figure(figsize=size)
    ax = fig.subplots()
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig, ax


def _metric(table: list) -> tuple:
    """The score a scaling table's plots show: (key, axis label); ARC: the voted pass@2."""
    if "pass@2" in table[0]:
        return "pass@2", "test pass@2 (%)"
    return "exact", "test exact accuracy (%)"


def plot_scaling(table: list, trained: int, path: str, title: str) -> bool:
    """Depth: test accuracy against supervision steps, fixed and with adaptive halting."""
    import matplotlib.ticker
    fig, ax = _scaling_axes(title)
    metric, label = _metric(table)
    for mode, style in (("fixed", "o-"), ("adaptive", "s--")):
        rows = [r for r in table if r["mode"] == mode]
        ax.plot([r["mean_steps"] for r in rows], [100 * r[metric] for r in rows], style,
                label={"fixed": "k supervision steps", "adaptive": "halting head, at most k"}[mode])
    ax.axvline(trained, color="gray", lw=0.8, ls=":", label=f"trained with {trained}")
    ax.set(xscale="log", xlabel="supervision steps per puzzle (mean)", ylabel=label)
    counts = sorted({r["steps"] for r in table})
    ax.set_xticks(counts, [str(k) for k in counts])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def plot_recursion_scaling(table: list, trained: int, path: str, title: str) -> bool:
    """Accuracy against net calls per puzzle: more depth (one trajectory, k steps), more breadth
    (K trajectories at the trained depth, one line per selection rule) and both (K trajectories
    at the deepest k), with the oracle as the ceiling of every rule. False if there is no K > 1."""
    rules = sorted({r["mode"] for r in table if r["trajectories"] > 1})
    if not rules:
        return False
    fig, ax = _scaling_axes(title, size=(7.5, 4.5))
    metric, label = _metric(table)
    depth = [r for r in table if r["mode"] == "fixed"]
    ax.plot([r["net_calls"] for r in depth], [100 * r[metric] for r in depth], "ko-", lw=2,
            label="depth: 1 trajectory, k steps")
    deepest = max(r["steps"] for r in table)
    colours = dict(zip(rules, ("C0", "C1", "C2", "C3", "C4", "C5")))
    for rule in rules:
        for steps, style, what in ((trained, "-", "breadth"), (deepest, ":", "both")):
            rows = [r for r in table if r["mode"] == rule and r["steps"] == steps]
            if rows and (what == "breadth" or deepest != trained):
                ax.plot([r["net_calls"] for r in rows], [100 * r[metric] for r in rows],
                        style, marker="s" if what == "breadth" else "^", color=colours[rule],
                        label=f"{what}: K trajectories at {steps} steps, {rule}")
    ax.set(xscale="log", xlabel="net calls per puzzle", ylabel=label)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def plot_fixed_point(table: list, trained: int, path: str, title: str) -> bool:
    """The deterministic trajectory per supervision step: how far the latent still moves (its
    relative change, log scale) beside the test accuracy; a latent that stops moving has reached
    a fixed point, one that keeps moving oscillates or drifts."""
    rows = [r for r in table if r["mode"] == "residual_by_step"]
    fig, ax = _scaling_axes(title)
    steps = [r["steps"] for r in rows]
    ax.plot(steps, [r["residual"] for r in rows], "o-", color="C3")
    ax.set(yscale="log", xlabel="supervision step", ylabel="relative change of the latent")
    ax.axvline(trained, color="gray", lw=0.8, ls=":")
    acc = ax.twinx()
    acc.plot(steps, [100 * r["exact"] for r in rows], "s--", color="C0")
    acc.set_ylabel("test exact accuracy (%)", color="C0")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def banner(cfg: dict, train, test, device) -> list:
    """What runs, on what, from which data and commit: the lines train.py prints and writes to
    log.txt first."""
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    lines = [f"task {cfg['task']} | model {cfg['model']} ({cfg['net']}) | device {device} "
             f"{cfg['dtype']} | torch {torch.__version__} | git {git}",
             f"train: {train.source} | sha256 {train.meta['sha256']}",
             f"test:  {test.source} | sha256 {test.meta['sha256']}",
             "config: " + json.dumps({k: v for k, v in cfg.items()
                                      if k not in ("model_config", "data_source")}),
             f"params: {cfg['params']}"]
    if train.num_puzzle_ids > 1:  # ARC: one learned embedding row per augmented puzzle
        lines.append(f"puzzle ids: {train.num_puzzle_ids} (the embedding table, "
                     f"{train.num_puzzle_ids} x {cfg['hidden']}, is not in params)")
    if train.generated:
        lines.insert(1, "!! GENERATED data: not the benchmark; not comparable to the paper")
    return lines


def read_evals(log_path: str) -> list:
    """(step, minutes since the run started, test score, its name) of each eval line of a run's
    log.txt; the score is test exact (ARC: the voted pass@2)."""
    out = []
    with open(log_path) as f:
        for line in f:
            if line.startswith("eval "):
                fields = [p.strip() for p in line.split("|")]
                hours = "h" in fields[4]  # fmt_time's "1h05m" or "4m21s"
                big, small = map(int, fields[4][:-1].split("h" if hours else "m"))
                minutes = 60 * big + small if hours else big + small / 60
                *name, value = fields[1].split()
                out.append((int(fields[0].split()[1]), minutes, float(value), " ".join(name)))
    return out


def plot_comparison(runs: dict, path: str, title: str, floors: dict | None = None):
    """Test exact accuracy of several runs ({label: log.txt path}) against wall time and against
    optimiser steps, side by side: a method can win on one axis and lose on the other. floors:
    {label: score} drawn as flat lines (a baseline such as copying the input)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4))
    by_time, by_step = fig.subplots(1, 2)
    for label, log_path in runs.items():
        steps, minutes, score, names = zip(*read_evals(log_path))
        by_time.plot(minutes, [100 * e for e in score], "o-", ms=3, label=label)
        by_step.plot(steps, [100 * e for e in score], "o-", ms=3, label=label)
    for label, value in (floors or {}).items():
        for ax in (by_time, by_step):
            ax.axhline(100 * value, color="gray", ls="--", lw=1, label=label)
    by_time.set(xlabel="wall time (minutes, evaluations included)", ylabel=f"{names[0]} (%)")
    by_step.set(xlabel="optimiser step", ylabel=f"{names[0]} (%)")
    for ax in (by_time, by_step):
        ax.set_ylim(0, max(100 * max(score) * 1.2, 1) if "pass" in names[0] else 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_json(out: str, files: dict):
    """Write each {name: object} of `files` as out/name in JSON."""
    for name, obj in files.items():
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f)


def write_results(run, final: dict, elapsed: float) -> str:
    """Write out/results.json, the facts of a finished run (run: train.py's Run; final: its last
    evaluation), and return the log's final line."""
    cfg, generated = run.cfg, run.train.generated
    voted = {"pass_at": final["pass_at"]} if "pass_at" in final else {}  # ARC: the voted answers
    with open(os.path.join(cfg["out"], "results.json"), "w") as f:
        json.dump(dict(task=cfg["task"], model=cfg["model"], params=cfg["params"],
                       step=final["step"], test_exact=final["exact"], test_cell=final["cell"],
                       puzzles=final["puzzles"], exact_by_step=final["exact_by_step"],
                       wall_s=round(elapsed), generated=generated, data=cfg["data_source"],
                       device=str(run.device), ranks=cfg["ranks"], **voted), f, indent=1)
    if voted:
        p = final["pass_at"]["trm"]
        score = f"test pass@2 {p[2]:.4f}, pass@1 {p[1]:.4f} (voted over {final['puzzles']} copies)"
    else:
        score = f"test exact acc {final['exact']:.4f} on {final['puzzles']} puzzles"
    return f"final | {score}{' (GENERATED data)' if generated else ''} | {fmt_time(elapsed)}"


if __name__ == "__main__":  # python -m lib.report OUT=LABEL ... [floor:LABEL=SCORE] PNG "title"
    *named, png, heading = sys.argv[1:]
    pairs = [n.split("=", 1) for n in named]
    floors = {out[6:]: float(v) for out, v in pairs if out.startswith("floor:")}
    runs = {label: f"{out}/log.txt" for out, label in pairs if not out.startswith("floor:")}
    plot_comparison(runs, png, heading, floors)
