"""Checkpoints written by the official code (sapientinc/HRM, SamsungSAILMontreal/
TinyRecursiveModels) or by anyone who trained with it: find the files in a local folder or a
Hugging Face repo, build the matching TRMConfig / HRMConfig from all_config.yaml, and load the
weights strictly into trm.py / hrm.py.

A folder as the official pretrain.py writes it holds `all_config.yaml` (arch: name, H_cycles,
L_cycles, H_layers, L_layers, hidden_size, ...) and `step_<N>` files, each a torch.save'd state dict
of the loss head around the model (keys `model.inner.L_level.layers.0...`, prefixed `_orig_mod.`
after torch.compile; with ema=True the saved weights are the EMA copy)."""
import json
import math
import os
import re
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path

import torch

import data
import hrm
import trm
from lib.checkpoint import first_mismatch, mismatch
from lib.config import fail

# arch fields of all_config.yaml that we read, and those that carry no model choice here
USED = {"name", "H_cycles", "L_cycles", "H_layers", "L_layers", "hidden_size", "num_heads",
        "expansion", "pos_encodings", "mlp_t", "puzzle_emb_len", "puzzle_emb_ndim",
        "halt_max_steps", "halt_exploration_prob", "rope_theta", "no_ACT_continue"}
IGNORED = {"loss", "forward_dtype"}  # the loss head's settings, the official bf16 casts
# options whose other values these model files do not implement: the value they must have
FIXED = {"rms_norm_eps": 1e-5}


def fetch(where: str, cache_dir: str = "data/checkpoints", log=print) -> Path:
    """The local folder (or step file) of a checkpoint: `where` itself if it exists, else a
    Hugging Face model repo `owner/name[/subfolder]`, whose all_config.yaml and step_* files are
    downloaded (once) into cache_dir, through $HF_ENDPOINT like the datasets."""
    if Path(where).exists():
        return Path(where)
    parts = where.strip("/").split("/")
    if len(parts) < 2:
        fail(f"--official {where}: no such folder, and not a Hugging Face repo id (owner/name)")
    step = parts.pop() if re.fullmatch(r"step_\d+", parts[-1]) else None  # a named step file
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    folder = Path(cache_dir) / repo / sub
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models/{repo}", timeout=10) as r:
            names = [s["rfilename"] for s in json.load(r)["siblings"]]
        wanted = [n for n in names if os.path.dirname(n) == sub and
                  re.fullmatch(rf"all_config\.yaml|{step or 'step_[0-9]+'}", os.path.basename(n))]
        if not any("step_" in n for n in wanted):
            fail(f"--official {where}: the repo has no step_<N> file in "
                 f"{sub or 'its top folder'} (it has: {', '.join(names[:10])})")
        for name in wanted:
            if not (folder / os.path.basename(name)).exists():
                data.download(f"{endpoint}/{repo}/resolve/main/{name}",
                              folder / os.path.basename(name), log)
    except OSError as e:
        fail(f"--official {where}: no such folder, and fetching it as a Hugging Face repo from "
             f"{endpoint} failed ({e}); give a folder, or download it by hand")
    return folder / step if step else folder


def step_file(where: Path) -> tuple[Path, int]:
    """(file, step) of a step_<N> file, or of the newest one in a folder."""
    if where.is_file():
        if not re.fullmatch(r"step_\d+", where.name):
            fail(f"--official {where}: not a step_<N> file of the official code")
        return where, int(where.name[5:])
    steps = {int(p.name[5:]): p for p in where.glob("step_*") if p.name[5:].isdigit()}
    if not steps:
        fail(f"--official {where}: no step_<N> checkpoint file in it")
    return steps[max(steps)], max(steps)


def read_arch(folder: Path) -> dict:
    """The arch section of all_config.yaml, or {} when the folder has none; a file that is not
    YAML, or has no arch mapping, is one line naming it."""
    path = folder / "all_config.yaml"
    if not path.exists():
        return {}
    import yaml  # PyYAML: only this loader needs it
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, ValueError) as e:  # ValueError: bytes that are not text
        mark = getattr(e, "problem_mark", None)
        fail(f"--official {path} is not YAML ({getattr(e, 'problem', None) or type(e).__name__}"
             f"{f' at line {mark.line + 1}' if mark else ''}): fix it, or remove it to take the "
             f"model from the flags")
    arch = config.get("arch") if isinstance(config, dict) else None
    if not isinstance(arch, dict):
        fail(f"--official {path} has no arch: mapping, the model's settings as the official "
             f"pretrain.py writes them (hidden_size, num_heads, ...): fix it, or remove it to take "
             f"the model from the flags")
    return arch


def number(arch: dict, key: str, must: str, ok, default=None):
    """arch[key], or `default` when it is absent and has one; one line unless it is a finite
    number (not a bool: YAML's true is an int to Python) that ok() takes."""
    if key not in arch and default is not None:
        return default
    if key not in arch:
        fail(f"all_config.yaml: arch has no {key}, which the model needs: add the value the "
             f"checkpoint was trained with")
    value = arch[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not ok(value):
        fail(f"all_config.yaml: arch {key} {value!r} must be {must}")
    return value


def count(arch: dict, key: str) -> int:
    """A size or a count of all_config.yaml (hidden_size, a number of layers or cycles): an
    integer of at least 1, as the flags that set them here (--n 0 is refused the same way)."""
    return number(arch, key, "an integer of at least 1", lambda v: isinstance(v, int) and v >= 1)


def model_config(arch: dict, vocab_size: int, seq_len: int, num_puzzle_ids: int):
    """(model class, config) of an official arch dict; any field or value that these model files
    do not implement is one clear error naming it."""
    unknown = sorted(set(arch) - USED - IGNORED - set(FIXED))
    if unknown:
        fail(f"all_config.yaml: arch option(s) {', '.join(unknown)} are not known here")
    for key, value in FIXED.items():
        if key in arch and arch[key] != value:
            fail(f"all_config.yaml: arch {key} = {arch[key]} is not implemented (only {value})")
    name = str(arch.get("name", ""))
    is_trm = "trm" in name.lower() or "TinyRecursive" in name
    if not is_trm and "hrm" not in name.lower() and "Hierarchical" not in name:
        fail(f"all_config.yaml: arch name {name!r} is neither TRM nor HRM")
    mlp_t = bool(arch.get("mlp_t", False))
    if not mlp_t and arch.get("pos_encodings", "rope") != "rope":  # MLP-t uses no positions
        fail(f"all_config.yaml: pos_encodings {arch['pos_encodings']!r} is not implemented "
             f"(attention here uses rope)")
    D, heads = count(arch, "hidden_size"), count(arch, "num_heads")
    if not mlp_t and D % heads:
        fail(f"all_config.yaml: arch hidden_size {D} must be a multiple of num_heads {heads} "
             f"(attention splits the hidden size over the heads)")
    # the prefix: puzzle_emb_len tokens, or where it is 0 or absent, as the official code does,
    # ceil(puzzle_emb_ndim / hidden_size)
    emb_len = number(arch, "puzzle_emb_len", "an integer of at least 0",
                     lambda v: isinstance(v, int) and v >= 0, default=0)
    if not emb_len:
        ndim = number(arch, "puzzle_emb_ndim", "a number of at least 0", lambda v: v >= 0,
                      default=D)
        emb_len = math.ceil(ndim / D)
    if emb_len < 1:  # the halting head reads the first prefix token
        fail("all_config.yaml: arch puzzle_emb_len and puzzle_emb_ndim are 0, but the models here "
             "need a puzzle-embedding prefix of at least 1 token")
    common = dict(vocab_size=vocab_size, seq_len=seq_len, num_puzzle_ids=num_puzzle_ids,
                  hidden_size=D, num_heads=heads,
                  expansion=number(arch, "expansion", "a number above 0", lambda v: v > 0),
                  mlp_t=mlp_t, puzzle_emb_len=emb_len,
                  rope_theta=number(arch, "rope_theta", "a number above 0", lambda v: v > 0,
                                    default=10000.0),
                  halt_exploration_prob=number(arch, "halt_exploration_prob",
                                               "a probability in [0, 1]", lambda v: 0 <= v <= 1))
    # the recursion: a cycle count of 0 would leave the latent where it starts, a step count of 0
    # would run no step
    layers, H, L = count(arch, "L_layers"), count(arch, "H_cycles"), count(arch, "L_cycles")
    if is_trm:  # TRM's continue head is off unless no_ACT_continue is False (Table 1's "w/ ACT")
        return trm.TRM, trm.TRMConfig(**common, num_layers=layers, n=L, T=H,
                                      N_sup=count(arch, "halt_max_steps"),
                                      act_continue=not arch.get("no_ACT_continue", True))
    if arch.get("no_ACT_continue"):
        fail("all_config.yaml: arch no_ACT_continue: True is a TRM option; HRM always learns its "
             "continue value")
    if count(arch, "H_layers") != layers:
        fail(f"all_config.yaml: H_layers {arch['H_layers']} != L_layers {layers}: "
             f"hrm.py builds f_L and f_H with the same number of blocks")
    return hrm.HRM, hrm.HRMConfig(**common, num_layers=layers, N=H, T=L,
                                  M_max=count(arch, "halt_max_steps"))


def read_state_dict(path: Path) -> dict:
    """An official step_<N> file's state dict (the official names), or one line saying why the
    file is not one."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a state dict
        fail(f"--official {path} cannot be read as a state dict ({type(e).__name__})")


def load(model, official: dict, where: str):
    """Load an official state dict (the official names) into `model` strictly: the one path by
    which official weights enter trm.py / hrm.py (--official, the golden tests). prepare() has
    checked every tensor against the model of all_config.yaml but the puzzle-embedding table's
    rows, one per puzzle id of the task (ARC: of its build), which are known once the data is
    loaded: a table that does not fit is one clear error naming it."""
    ours = (trm if isinstance(model, trm.TRM) else hrm).official_state_dict(official)
    problem = first_mismatch(model.state_dict(), ours)
    if problem:
        fail(f"{where}: {problem} (the puzzle-embedding table: trained on a task with another "
             f"number of puzzle ids)")
    model.load_state_dict(ours, strict=True)
    return model


def prepare(cfg: dict):
    """--official, for train.py: fetch the checkpoint and take the model from its all_config.yaml
    (without one, from the flags: --model, --net, --hidden, --heads, --layers, the recursion,
    --prefix-len, each the task's preset where not given). Its weights are the ones to score
    (with the official ema=True, they already are the EMA), so no EMA copy is made here."""
    file, step = step_file(fetch(cfg["official"]))
    arch = read_arch(file.parent)
    source = "all_config.yaml" if arch else "the flags"
    if not arch:
        print(f"{file.parent} has no all_config.yaml: the model comes from the flags --model, "
              f"--net, --hidden, --heads, --layers, the recursion (TRM --n --T --N-sup, HRM --N "
              f"--T --M-max) and --prefix-len, each the task's preset where not given")
        H, L, steps = ("T", "n", "N_sup") if cfg["model"] == "trm" else ("N", "T", "M_max")
        arch = dict(name=cfg["model"], hidden_size=cfg["hidden"], num_heads=cfg["heads"],
                    expansion=4, L_layers=cfg["layers"], H_layers=cfg["layers"],
                    mlp_t=cfg["net"] == "mlp", puzzle_emb_len=cfg["prefix_len"],
                    halt_exploration_prob=cfg["halt_explore"], H_cycles=cfg[H], L_cycles=cfg[L],
                    halt_max_steps=cfg[steps])
    spec = data.TASKS[cfg["task"]]
    # the table's rows are set when the data is loaded (train.model_config): ARC's build has one
    # per augmented puzzle, which must be the official builder's ids for the rows to line up
    Model, mcfg = model_config(arch, spec["vocab"], spec["grid"][0] * spec["grid"][1],
                               num_puzzle_ids=1)
    # every tensor but the table's rows must fit now, before any data is loaded
    weights = (trm if Model is trm.TRM else hrm).official_state_dict(read_state_dict(file))
    rows = len(weights["puzzle_emb"]) if "puzzle_emb" in weights else 1
    problem = mismatch(weights, Model, replace(mcfg, num_puzzle_ids=rows))
    if problem:
        fail(f"--official {file}: its weights do not fit the model from {source} ({problem}): "
             f"make {source} match the checkpoint's training (vocab_size and seq_len come from "
             f"--task)")
    cfg.update(model="trm" if Model is trm.TRM else "hrm", net="mlp" if mcfg.mlp_t else "att",
               ema=0, model_config=asdict(mcfg), official_file=str(file), official_step=step)
