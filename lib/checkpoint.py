"""Checkpoints: everything a run needs to go on as if never stopped (weights, EMA, optimisers,
step, the carry of every rank, every rank's random state, logs). `run` is train.py's Run."""
import contextlib
import os
import sys

import torch

from lib import parallel
from lib.config import fail, read_checkpoint


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
    # write to a temporary file and rename: a crash mid-write never leaves a broken checkpoint.
    # Through a Python file, so that a full disk raises OSError(ENOSPC) (torch.save of a path
    # says only "unexpected pos", twice)
    out = run.cfg["out"]
    path = os.path.join(out, "ckpt.pt")
    try:
        with open(path + ".tmp", "wb") as f:
            torch.save(ckpt, f)
        os.replace(path + ".tmp", path)
    except OSError as e:
        with contextlib.suppress(OSError):  # the partial file, if any: the disk may be full
            os.remove(path + ".tmp")
        why = f"{out}: writing the checkpoint failed ({e.strerror or e})"
        fix = "once the folder takes files again (free some space, or give another --out)"
        if os.path.exists(path):
            fail(f"{why}; the last good checkpoint, {path}, is untouched: {fix}, go on with "
                 f"--resume {path}")
        fail(f"{why}; no checkpoint was written: {fix}, run again")


def all_finite(module) -> bool:
    """No NaN or Inf in the module's weights: what train.py checks before every save."""
    return all(torch.isfinite(t).all() for t in module.state_dict().values()
               if t.is_floating_point())


def stop_not_finite(run, progress, what: str):
    """Stop on NaN/Inf before anything is checkpointed: every checkpoint written is finite."""
    path = os.path.join(run.cfg["out"], "ckpt.pt")
    kept = f"the last good checkpoint, {path}, is untouched" if os.path.exists(path) \
        else "no checkpoint was written"
    progress.log(f"step {run.step}: {what} (NaN/Inf). Stopping; {kept}. Try a lower --lr, or "
                 f"--dtype fp32.")
    sys.exit(1)


def ema_weights(ckpt: dict) -> dict:
    """The evaluated (EMA) weights of a checkpoint, as a full state dict: the puzzle-embedding
    table, which the EMA model shares, is stored once, with the model's weights."""
    return {"puzzle_emb": ckpt["model"]["puzzle_emb"], **ckpt["ema"]}


def first_mismatch(want: dict, have: dict) -> str | None:
    """What keeps the state dict `have` from loading strictly into a model whose own state dict
    is `want`: the tensors missing or unexpected, else the first one of another shape; None when
    it fits."""
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        return "; ".join(what for what in (f"missing {', '.join(missing[:4])}" * bool(missing),
                                           f"unexpected {', '.join(extra[:4])}" * bool(extra))
                         if what)
    return next((f"{key} has shape {tuple(have[key].shape)}, this model needs {tuple(t.shape)}"
                 for key, t in want.items() if have[key].shape != t.shape), None)


def mismatch(weights: dict, Model, mcfg) -> str | None:
    """first_mismatch of `weights` and Model(mcfg), with the config's settings that shape the
    tensors; None when they fit. The model is built on the meta device: shapes only, no memory,
    no time, so that this is checked before any data is loaded."""
    with torch.device("meta"):
        want = Model(mcfg).state_dict()
    problem = first_mismatch(want, weights)
    return problem and (
        f"{problem}; the config: hidden_size {mcfg.hidden_size}, expansion {mcfg.expansion}, "
        f"{mcfg.num_layers} layers, {'MLP-t' if mcfg.mlp_t else 'attention'}, puzzle_emb_len "
        f"{mcfg.puzzle_emb_len}, vocab_size {mcfg.vocab_size}, seq_len {mcfg.seq_len}")


def check_fits(path: str, Model, mcfg):
    """Refuse a checkpoint whose weights do not fit the model its own config builds, Model(mcfg),
    in one line, before any data is loaded (load_state_dict would say it in a traceback, later)."""
    problem = mismatch(read_checkpoint(path, mmap=True)["model"], Model, mcfg)
    if problem:
        fail(f"--resume {path}: its weights do not fit its config ({problem}): the config was "
             f"edited, or trm.py / hrm.py changed since it was written; resume from a checkpoint "
             f"this code wrote, or start afresh")


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
