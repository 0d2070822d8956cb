"""The TRM paper's ablation table (Table 1 of arXiv 2510.04871) in miniature, on a CPU:

    python -m lib.ablations                      # sudoku6, 3 seeds, 1,000 steps per run
    python -m lib.ablations --seeds 0 --steps 300 --rows full,ema  # a quick look

Each row is train.py with the small sudoku6 preset plus one switch, trained once per seed in its
own process (two at a time, one thread each: --jobs); the table gives the mean and sample standard
deviation over seeds of the final test exact accuracy, and the means of the cell accuracy, the
steps, the wall time and the peak memory (resident set, from the kernel's accounting of each
process). It writes out/ablations/: table.md, runs.json (every run) and ablations.png.

The paper trains TRM-MLP with T=3, n=6 on Sudoku-Extreme; the small preset is TRM-MLP with T=2,
n=3, D=64, so each switch is its miniature: "4 layers, n=3" keeps the paper's trade (twice the
layers, about half the latent updates, the same depth per recursion) as 4 layers with n=1.
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (key, the row's name, train.py flags, the paper's Sudoku-Extreme number; Table 1)
ROWS = [  # in the paper's order
    ("full", "TRM (T=2, n=3, 2 layers, MLP-t, EMA)", [], 87.4),
    ("act", "w/ ACT (--act-continue: the Q-learning continue loss, one more forward pass)",
     ["--act-continue"], 86.1),
    ("separate", "w/ separate f_H, f_L (--separate-nets)", ["--separate-nets"], 82.4),
    ("ema", "no EMA (--ema 0)", ["--ema", "0"], 79.9),
    ("layers", "w/ 4 layers, n=1 (paper: 4 layers, n=3)", ["--layers", "4", "--n", "1"], 79.5),
    ("att", "w/ self-attention (--net att)", ["--net", "att"], 74.7),
    ("t2n2", "w/ T=2, n=2 (the paper's values; the miniature's n=3 becomes 2)",
     ["--T", "2", "--n", "2"], 73.7),
    ("1step", "w/ 1-step gradient (--grad-window 2)", ["--grad-window", "2"], 56.5),
    ("off", "recursion off (T=1, n=1, N_sup=1; not in the paper)",
     ["--T", "1", "--n", "1", "--N-sup", "1"], None),
]


def start(row: tuple, seed: int, args, out: str) -> subprocess.Popen:
    """One training run of `row` and `seed` in its own process; its folder is out/<key>-seed<s>."""
    key, _, flags, _ = row
    folder = os.path.join(out, f"{key}-seed{seed}")
    # an earlier run's results.json must not pass for this one's: run_all reads what it finds
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, "results.json"))
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--task", args.task, "--seed",
           str(seed), "--steps", str(args.steps), "--eval-every", str(args.steps), "--threads",
           "1", "--out", folder, *args.extra.split(), *flags]
    log = open(os.path.join(out, f"{key}-seed{seed}.txt"), "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def run_all(rows: list, args, out: str) -> list:
    """Every (row, seed), at most args.jobs at a time; one dict per run, in row and seed order."""
    todo = [(row, seed) for row in rows for seed in args.seeds]
    running, done, t0 = {}, {}, time.time()
    while todo or running:
        while todo and len(running) < args.jobs:
            row, seed = todo.pop(0)
            # keep the Popen: one that is garbage-collected while its child runs is reaped by
            # subprocess itself at the next Popen, and os.wait4 below would never see it
            proc = start(row, seed, args, out)
            running[proc.pid] = (proc, row, seed, time.time())
        # os.wait4: this child's own resource use, whose ru_maxrss is its peak memory (KiB)
        pid, status, usage = os.wait4(-1, 0)
        proc, (key, name, flags, paper), seed, began = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
        folder = os.path.join(out, f"{key}-seed{seed}")
        if proc.returncode != 0:
            sys.exit(f"lib.ablations: the run {key} seed {seed} failed: see {folder}.txt")
        results = os.path.join(folder, "results.json")
        if not os.path.exists(results):  # e.g. --extra --dry-run, or another --out
            sys.exit(f"lib.ablations: the run {key} seed {seed} wrote no {results}: did --extra "
                     f"end it early or send it to another --out? See {folder}.txt")
        result = json.load(open(results))
        done[key, seed] = dict(key=key, name=name, flags=" ".join(flags), paper=paper, seed=seed,
                               exact=result["test_exact"], cell=result["test_cell"],
                               steps=result["step"],
                               wall_s=time.time() - began, peak_mib=usage.ru_maxrss / 1024)
        left = len(todo) + len(running)
        print(f"{key:9s} seed {seed}: test exact {result['test_exact']:.4f} in "
              f"{time.time() - began:.0f}s | {left} runs left, {time.time() - t0:.0f}s so far",
              flush=True)
    return [done[row[0], seed] for row in rows for seed in args.seeds]


def summarise(runs: list) -> list:
    """One dict per row: mean and sample sd (0 with one seed) of each measured column."""
    table = []
    for key in dict.fromkeys(r["key"] for r in runs):
        mine = [r for r in runs if r["key"] == key]
        row = {k: mine[0][k] for k in ("key", "name", "flags", "paper")}
        for column in ("exact", "cell", "steps", "wall_s", "peak_mib"):
            values = [r[column] for r in mine]
            row[column] = statistics.mean(values)
            row[column + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["seeds"] = [r["seed"] for r in mine]
        table.append(row)
    return table


def markdown(table: list, args) -> str:
    lines = [f"Miniature Table 1: {args.task}, {args.steps} steps per run, seeds "
             f"{', '.join(map(str, args.seeds))}; mean ± sd over seeds.", "",
             "| row | test exact acc. (this code) | paper (Sudoku-Extreme, Table 1) | cell acc. | "
             "steps | wall time per run | peak memory |", "|---|---|---|---|---|---|---|"]
    for r in table:
        paper = "—" if r["paper"] is None else f"{r['paper']}%"
        lines.append(f"| {r['name']} | {100 * r['exact']:.1f}% ± {100 * r['exact_sd']:.1f} | "
                     f"{paper} | {100 * r['cell']:.1f}% | {r['steps']:.0f} | "
                     f"{r['wall_s']:.0f} ± {r['wall_s_sd']:.0f} s | "
                     f"{r['peak_mib']:.0f} MiB |")
    return "\n".join(lines) + "\n"


def plot(table: list, runs: list, path: str, title: str):
    """Each row's seeds (dots) and mean (bar) beside the paper's number (open diamond)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    for i, r in enumerate(table):
        ax.bar(i, 100 * r["exact"], color="C0", alpha=0.5)
        seeds = [100 * x["exact"] for x in runs if x["key"] == r["key"]]
        ax.plot([i] * len(seeds), seeds, "k.", ms=6)
        if r["paper"] is not None:
            ax.plot(i, r["paper"], "D", mfc="none", color="C3", ms=8)
    ax.plot([], [], "D", mfc="none", color="C3", label="paper (Sudoku-Extreme)")
    ax.plot([], [], "k.", label="this code, one seed")
    ax.set_xticks(range(len(table)), [r["key"] for r in table])
    ax.set(ylabel="test exact accuracy (%)", ylim=(0, 118), yticks=range(0, 101, 20), title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper center", ncol=2, fontsize=8)  # above the bars, which end at 100
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lib.ablations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sudoku6")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps per run")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma-separated seeds (each also seeds a generated task's puzzles)")
    parser.add_argument("--rows", default="all",
                        help=f"comma-separated rows ({', '.join(r[0] for r in ROWS)}) or all")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--extra", default="", help="more train.py flags for every run")
    parser.add_argument("--out", default=os.path.join("out", "ablations"))
    args = parser.parse_args(argv)
    keys = [r[0] for r in ROWS]
    wanted = keys if args.rows == "all" else args.rows.split(",")
    if unknown := [k for k in wanted if k not in keys]:
        parser.error(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(keys)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r} must be integers separated by commas, e.g. 0,1,2")
    if args.steps < 1 or args.jobs < 1:
        parser.error("--steps and --jobs must be at least 1")
    os.makedirs(args.out, exist_ok=True)
    runs = run_all([r for r in ROWS if r[0] in wanted], args, args.out)
    table = summarise(runs)
    with open(os.path.join(args.out, "runs.json"), "w") as f:
        json.dump(dict(runs=runs, table=table, steps=args.steps, task=args.task), f, indent=1)
    text = markdown(table, args)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    plot(table, runs, os.path.join(args.out, "ablations.png"),
         f"TRM's Table 1 in miniature: {args.task}, {args.steps} steps, {len(args.seeds)} seeds")
    print(text + f"wrote table.md, runs.json and ablations.png in {args.out}")
    return table


if __name__ == "__main__":
    main()
