"""Several processes, one per GPU, started by torchrun: `torchrun --nproc-per-node K train.py ...`
(one machine) or with torchrun's --nnodes / --node-rank / --rdzv-endpoint (several). A plain
`python train.py` is one process and never touches torch.distributed: every function here is then
the identity.

How the K ranks share the work, as the official code does (pretrain.py, where each rank takes its
share of the global batch):
- the global batch of B slots is split into K consecutive parts of B / K; rank r owns slots
  r B / K .. (r + 1) B / K - 1 of the carry, and of every batch. Each rank builds the whole batch
  (cheap: it is a slice of the data in memory, seeded by the step) and keeps its part, so the K
  ranks together see exactly the batch one process would;
- after backward, the gradients are averaged over the ranks (an all-reduce), so every rank takes
  the same optimiser step and the weights, the puzzle embedding and the EMA stay equal everywhere;
- evaluation: each rank runs a share of the test puzzles, and the results are gathered, so every
  rank reports the same numbers;
- only rank 0 writes log.txt, checkpoints, plots and results.json; a checkpoint holds every rank's
  slots and random state, so that a run resumed with the same K goes on exactly.
Backends: nccl for CUDA, gloo for CPU (the tests run two CPU processes).
"""
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist


def launched_ranks() -> int:
    """The number of processes torchrun started (1 without torchrun), read before any set-up."""
    return int(os.environ.get("WORLD_SIZE", 1))


def start(backend: str) -> int:
    """Join the other ranks over `backend` (nccl, gloo) if torchrun started several processes;
    returns this process's GPU index on its machine (LOCAL_RANK, 0 without torchrun)."""
    if launched_ranks() > 1 and not dist.is_initialized():
        dist.init_process_group(backend)
    return int(os.environ.get("LOCAL_RANK", 0))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def my_slots(batch_size: int) -> slice:
    """This rank's consecutive part of the batch's slots."""
    part = batch_size // world()
    return slice(rank() * part, (rank() + 1) * part)


@contextmanager
def main_first():
    """Run the block on rank 0 first and on the others after it: rank 0 downloads or generates
    the data and the others then find it in the cache, instead of writing the same files at once."""
    if not is_main():
        dist.barrier()
    yield
    if is_main() and world() > 1:
        dist.barrier()


def average_gradients(model: torch.nn.Module):
    """Every parameter's gradient <- its mean over the ranks: one all-reduce of the dense ones,
    flat; the sparse one (the puzzle embedding's rows of the batch's ids) gathers every rank's
    rows, so that the update touches the ids of the whole batch."""
    if world() == 1:
        return
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad for p in params if not p.grad.is_sparse]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world()
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))
    for p in params:
        if p.grad.is_sparse:
            p.grad = gather_sparse(p.grad) / world()


def gather_sparse(grad: torch.Tensor) -> torch.Tensor:
    """A sparse (rows, D) gradient holding every rank's rows (an id on several ranks appears
    once per rank; SignSGD's coalesce sums them)."""
    g = grad.coalesce()
    ids, rows = g.indices()[0], g.values()  # (U,), (U, D): U differs by rank
    counts = [torch.zeros(1, dtype=torch.long, device=ids.device) for _ in range(world())]
    dist.all_gather(counts, torch.tensor([len(ids)], device=ids.device))
    counts = [int(c) for c in counts]
    most = max(counts)  # all_gather needs equal sizes: pad to the largest, then cut
    ids = torch.cat([ids, ids.new_zeros(most - len(ids))])
    rows = torch.cat([rows, rows.new_zeros(most - len(rows), rows.shape[1])])
    all_ids = [torch.empty_like(ids) for _ in counts]
    all_rows = [torch.empty_like(rows) for _ in counts]
    dist.all_gather(all_ids, ids)
    dist.all_gather(all_rows, rows)
    ids = torch.cat([t[:c] for t, c in zip(all_ids, counts)])
    rows = torch.cat([t[:c] for t, c in zip(all_rows, counts)])
    return torch.sparse_coo_tensor(ids[None], rows, grad.shape)


def same_weights(model: torch.nn.Module):
    """Give every rank rank 0's weights (the same seed makes them equal already; this makes sure,
    e.g. across machines whose random number generators differ)."""
    if world() > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, 0)


def sum_over_ranks(values: dict) -> dict:
    """{name: tensor} summed over the ranks (the same dict on every rank); a single tensor keeps
    its dtype (64-bit integers stay exact), several are summed as one float32 stack."""
    if world() == 1:
        return values
    if len(values) == 1:
        (name, t), = values.items()
        t = t.clone()
        dist.all_reduce(t)
        return {name: t}
    flat = torch.stack([v.float() for v in values.values()])
    dist.all_reduce(flat)
    return dict(zip(values, flat))


def gather_slots(carry: dict) -> dict:
    """Every rank's slots of the carry, joined in slot order (the whole carry, for a checkpoint)."""
    if world() == 1:
        return carry

    def gather(t):
        parts = [torch.empty_like(t) for _ in range(world())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)
    return {k: tuple(map(gather, v)) if isinstance(v, tuple) else gather(v)
            for k, v in carry.items()}


def gather_objects(obj) -> list:
    """[rank 0's obj, rank 1's, ...] on every rank."""
    if world() == 1:
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def rank0_says(flag: bool, device) -> bool:
    """Rank 0's flag on every rank: a decision taken on a clock (--minutes) is taken together."""
    if world() == 1:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def stop():
    """Wait for every rank, then leave the process group. A rank that left on its own while
    another was still at work (rank 0 writing its files) was seen to abort at exit, now and then."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ---- the carry's slots: a rank's part, or a micro-batch (--grad-accum)

def slots(carry: dict, part: slice) -> dict:
    """The carry of the slots in `part` (views, no copies)."""
    return {k: tuple(t[part] for t in v) if isinstance(v, tuple) else v[part]
            for k, v in carry.items()}


def join_slots(carries: list) -> dict:
    """Concatenate the carries of consecutive slot ranges back into one."""
    if len(carries) == 1:
        return carries[0]
    return {k: tuple(map(torch.cat, zip(*(c[k] for c in carries))))
            if isinstance(carries[0][k], tuple) else torch.cat([c[k] for c in carries])
            for k in carries[0]}
