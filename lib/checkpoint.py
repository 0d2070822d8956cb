"""Checkpoints: everything a run needs to go on as if never stopped (weights, EMA, optimisers,
step, the carry of every rank, every rank's random state, logs). `run` is train.py's Run."""
import os

import torch

from lib import parallel
from lib.config import read_checkpoint


def save(run, rng: dict):
    """Called on every rank: the whole carry and each rank's random state (rng, from train.py)
    go to rank 0, which writes the file."""
    carry = parallel.gather_slots(run.carry)
    rng = parallel.gather_objects(rng)
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


def load(run, path: str):
    """Load everything into run; return this rank's random state to restore (None when only
    evaluating)."""
    ckpt = read_checkpoint(path, map_location=run.device)
    run.model.load_state_dict(ckpt["model"])
    run.ema_model.load_state_dict(ema_weights(ckpt))
    run.opt.load_state_dict(ckpt["opt"])
    run.emb_opt.load_state_dict(ckpt["emb_opt"])
    run.step, run.history, run.evals = ckpt["step"], ckpt["history"], ckpt["evals"]
    print(f"resumed from {path} at step {run.step}")
    if run.cfg["eval_only"]:  # evaluation starts from fresh states: any number of ranks will do
        return None
    run.carry = parallel.slots(ckpt["carry"], parallel.my_slots(run.cfg["batch_size"]))
    return ckpt["rng"][parallel.rank()]  # config.resumed made sure the rank count is the same
