"""ARC-AGI as a task, behind the same interface as Sudoku and Maze (data.py): its tasks, loading
them (`load`), the training batches of a step (`ArcSet.batch`), the test examples
(`ArcSet.eval_batches`) and the voted scoring of their answers (`ArcSet.votes`).

The build itself (the official TRM builder's augmented copies and puzzle ids) is puzzles/arc.py,
the voting puzzles/arc_score.py. Every augmented copy of a task is its own puzzle, with its own id
and embedding row; the examples are made on the fly from the build plan instead of being stored,
since the official arrays take 7 GB."""
import hashlib
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from puzzles import arc, arc_score
from puzzles.common import download

# where ARC comes from when neither --data-dir nor the cache has it: the TRM repository's
# kaggle/combined files, pinned to a commit, through $ARC_ENDPOINT (default https://github.com)
ARC_REPO = ("SamsungSAILMontreal/TinyRecursiveModels", "e7b68717f0a6c4cbb4ce6fbef787b14f42083bd9")
MINI_ARC_REPO = ("KSB21ST/MINI-ARC", "792d082c")
# deviation: a sampler iteration is always 10,000 epochs, the ARC recipe's eval_interval; the
# official loader's follows eval_interval (and drops the last partial batch of each)
EPOCHS_PER_ITERATION = 10_000


def load(task: str, data_dir, cache_dir, log, num_aug: int | None = None, **_) -> tuple:
    """(train, test) ArcSets from data_dir, else the cache, else a download; no generator.
    num_aug: augmented copies per task (None: the official 1000)."""
    num_aug = arc.NUM_AUG if num_aug is None else num_aug
    repo, commit = TASKS[task]["repo"]
    where = "data/MiniARC/*.json of " + repo if task == "arc-mini" else \
        f"{', '.join(_files(task))} (kaggle/combined of {repo})"
    if data_dir is not None:
        folder, origin = Path(data_dir), f"files: {data_dir}"
    else:
        folder = Path(cache_dir) / ("mini-arc" if task == "arc-mini" else "arc-agi")
        origin = f"official: {repo}@{commit[:8]}"
        if not folder.exists() or not all((folder / n).exists() for n in _files(task)):
            try:
                _download(task, folder, log)
            except (OSError, zipfile.BadZipFile) as e:
                raise FileNotFoundError(
                    f"{task}: the data is not in {folder}/ and downloading it failed ({e}); "
                    f"put {where} into {folder}/, or give their folder with --data-dir "
                    f"(ARC has no offline generator)") from None
    t0 = time.time()
    if task == "arc-mini":
        plan = arc.build_mini_arc(folder, num_aug=num_aug, canvas=TASKS[task]["grid"][0])
        files = sorted(folder.glob("*.json"))
    else:
        plan = arc.build_arc(folder, task, num_aug=num_aug)
        files = [folder / n for n in _files(task)]
    sha = hashlib.sha256(b"".join(hashlib.sha256(f.read_bytes()).digest() for f in files))
    train, test = plan.splits["train"], plan.splits["test"]
    log(f"built {task} from {folder}: {len(plan.tasks):,} tasks, {len(plan.names):,} puzzle ids "
        f"({num_aug} augmentations per task), {len(train.example_pair):,} train and "
        f"{len(test.example_pair):,} test examples, in {time.time() - t0:.1f}s")
    return tuple(ArcSet(task, split, plan, f"{origin} ({what})",
                        dict(sha256=sha.hexdigest(), num_aug=num_aug)) for split, what in (
        ("train", f"{len(train.groups)} tasks' train pairs"),
        ("test", f"{len(test.groups)} tasks' {len(test.example_pair):,} test examples")))


TASKS = {
    "arc1": dict(description="ARC-AGI-1: training + evaluation + ConceptARC, test = evaluation "
                 "(benchmark)", repo=ARC_REPO, kind="arc", grid=(30, 30), vocab=arc.VOCAB,
                 load=load),
    "arc2": dict(description="ARC-AGI-2: training2 + evaluation2 + ConceptARC, test = "
                 "evaluation2 (benchmark)", repo=ARC_REPO, kind="arc", grid=(30, 30),
                 vocab=arc.VOCAB, load=load),
    # Mini-ARC's 5x5 grids in a 6x6 canvas (the grid and its EOS border): seq_len 36
    "arc-mini": dict(description="Mini-ARC, 149 tasks on 5x5 grids: demos train, test pairs "
                     "test", repo=MINI_ARC_REPO, kind="arc", grid=(6, 6), vocab=arc.VOCAB,
                     load=load),
}


@dataclass
class ArcSet:
    """One split of an ARC task: its examples, each one (input, output) pair of one augmented
    copy, are made on the fly from the build plan (arc.Plan, shared by both splits)."""
    task: str
    split: str  # "train" or "test"
    plan: arc.Plan = field(repr=False)
    source: str  # one line of provenance
    meta: dict = field(repr=False)  # "sha256" of the files read, "num_aug"
    stream: dict = field(default_factory=dict, repr=False)  # where batch()'s sampler is
    vocab_size: int = arc.VOCAB
    kind: str = "arc"
    generated: bool = False  # ARC has no generator

    def __len__(self):
        return len(self.plan.splits[self.split].example_pair)

    @property
    def grid(self) -> tuple[int, int]:
        return self.plan.canvas, self.plan.canvas

    @property
    def seq_len(self) -> int:
        return self.plan.canvas ** 2

    @property
    def num_puzzle_ids(self) -> int:  # the blank id 0 included
        return len(self.plan.names)

    def batch(self, step: int, batch_size: int, seed: int, augmented: bool = False,
              part=slice(None)):
        """The batch of step `step`: the official sampler (arc.train_batches: per epoch every
        task once, in random order, one random augmented copy each, all its examples),
        iterations of 10,000 epochs back to back; examples are made for `part` only. The stream
        is read in order; a step out of order (a resumed run) replays it from the start, so that
        batches are a function of (seed, step) as for the other tasks. (ARC's augmentations are
        the build's copies: `augmented` does not apply.)"""
        stream, split = self.stream, self.plan.splits["train"]
        if stream.get("key") != (seed, batch_size) or step < stream["next"]:
            stream.update(key=(seed, batch_size), iteration=-1, next=0, batches=iter(()))
        while True:
            for rows in stream["batches"]:
                stream["next"] += 1
                if stream["next"] == step + 1:
                    x, y, ids = arc.examples(self.plan, "train", rows[part])
                    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(ids).long()
            stream["iteration"] += 1
            stream["batches"] = arc.train_batches(split, seed, stream["iteration"],
                                                  EPOCHS_PER_ITERATION, batch_size)

    def eval_batches(self, batch_size: int, limit: int = 0):
        """(rows, inputs, labels, puzzle ids) of every test example, each augmented copy of each
        test input with its own id. Always the whole split (a vote needs every copy): `limit`
        does not apply. The last batch is padded (arc.test_batches); padding rows are dropped."""
        for rows in arc.test_batches(self.plan.splits["test"], batch_size):
            x, y, ids = arc.examples(self.plan, "test", rows)
            real = rows >= 0
            yield (torch.from_numpy(rows[real]), torch.from_numpy(x[real]),
                   torch.from_numpy(y[real]), torch.from_numpy(ids[real]).long())

    def votes(self, scored, adaptive: bool = False):
        """The voted scoring of the answers after the supervision step counts in `scored`."""
        return Voting(self.plan, scored, adaptive)


class Voting:
    """ARC's scoring (the official evaluator): every augmented copy of a test input answers, and
    the answers are pooled and ranked by votes (arc_score.Votes). fixed[k] holds the answers after
    exactly k supervision steps; with adaptive, halted[k] each copy's answer at the first step
    whose halting head says stop (at most k)."""

    def __init__(self, plan: arc.Plan, scored, adaptive: bool):
        self.scored, self.adaptive = sorted(scored), adaptive
        self.fixed = {k: arc_score.Votes(plan) for k in self.scored}
        self.halted = {k: arc_score.Votes(plan) for k in self.scored}

    def add(self, k: int, rows, logits, q_halt, halt):
        """The answers (logits (B, S, V)) of test-example rows (B,) after step k, with their
        halting logits q_halt (B,) and whether the head says stop (B,); steps come in order."""
        rows, halt = rows.numpy(), halt.cpu().numpy()
        if k == 1:
            self.stopped = np.zeros(len(rows), bool)
        stops = halt & ~self.stopped if self.adaptive else np.zeros(len(rows), bool)
        if k in self.fixed or stops.any():
            preds, q = logits.argmax(-1).cpu().numpy(), q_halt.float().cpu().numpy()
            if k in self.fixed:
                self.fixed[k].add(rows, preds, q)
                if self.adaptive:  # those that never stopped answer with their step-k answer
                    self.halted[k].add(np.where(self.stopped, -1, rows), preds, q)
            for j in (j for j in self.scored if j > k):  # these stop here, for every later count
                self.halted[j].add(np.where(stops, rows, -1), preds, q)
        self.stopped = self.stopped | stops

    def merge(self, gather):
        """Join every rank's pools (gather: parallel.gather_objects)."""
        for votes in (*self.fixed.values(), *self.halted.values()):
            pools, votes.pools = gather(votes.pools), {}
            votes.merge(pools)

    def result(self, k: int) -> dict:
        """The final numbers after k steps: pass@K with both credit rules (TRM: per test input,
        the paper's number; HRM: all of a task's test inputs), and the Kaggle submission to
        write at every evaluation."""
        passes, sub, _ = self.fixed[k].score()
        return dict(pass_at=passes, files={"submission.json": sub})

    def passes(self, mode: str, k: int) -> dict:
        """pass@1 and pass@2 (credit per test input) of `mode` "fixed" or "adaptive" after k."""
        votes = (self.fixed if mode == "fixed" else self.halted)[k]
        p = votes.score(ks=(1, 2))[0]["trm"]
        return {"pass@1": p[1], "pass@2": p[2]}


def _files(task: str) -> list:
    if task == "arc-mini":
        return []  # one JSON per task: whatever the folder holds
    return [f"arc-agi_{subset}_{part}.json" for subset in arc.VERSIONS[task][0]
            for part in ("challenges", "solutions")]


def _download(task: str, folder: Path, log):
    """The task's files from GitHub at the pinned commit: the Kaggle files one by one, Mini-ARC
    as the repository's zip archive, of which data/MiniARC/*.json is kept."""
    repo, commit = TASKS[task]["repo"]
    endpoint = os.environ.get("ARC_ENDPOINT", "https://github.com")
    if task != "arc-mini":
        for name in _files(task):
            if not (folder / name).exists():
                download(f"{endpoint}/{repo}/raw/{commit}/kaggle/combined/{name}", folder / name,
                         log)
        return
    archive = folder.with_name("mini-arc.zip")
    download(f"{endpoint}/{repo}/archive/{commit}.zip", archive, log)
    part = folder.with_name(folder.name + ".part")
    part.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if "/data/MiniARC/" in name and name.endswith(".json"):
                (part / Path(name).name).write_bytes(z.read(name))
    os.replace(part, folder)
    archive.unlink()
