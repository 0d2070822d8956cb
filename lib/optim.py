"""The optimisers of the official recipe, written out: AdamATan2 for the network, SignSGD for the
puzzle embedding, and the EMA of the weights that evaluation uses."""
import copy

import torch


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
    """w <- w * (1 - lr * wd) - lr * sign(grad) for the puzzle-embedding rows whose ids are in the
    batch, the official sparse update: a row of the batch is decayed even where its gradient is
    zero, and the rows of other ids are not touched. With many ids (ARC) the gradient is sparse
    (the model's F.embedding(sparse=True)), so a step costs rows of the batch, not of the table."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()  # one row per id in the batch, summed over its uses
                    ids, g = grad.indices()[0], grad.values()  # (U,), (U, D)
                else:  # one shared row (Sudoku, Maze): always in the batch
                    ids, g = torch.arange(len(p), device=p.device), p.grad
                p.index_copy_(0, ids, p[ids] * (1 - lr * wd) - lr * g.sign())


def ema_copy(model):
    """The model's EMA copy (ema_update below), sharing its puzzle-embedding table (~1M rows for
    ARC) instead of copying it."""
    return copy.deepcopy(model, memo={id(model.puzzle_emb): model.puzzle_emb})


@torch.no_grad()
def ema_update(ema_model, model, rate: float):
    # shadow <- rate * shadow + (1 - rate) * weights. The puzzle embedding is not averaged, as in
    # the official code where it is a buffer outside the EMA: both models share that one table
    # (train.py), so nothing of the table's size is copied here
    for p_ema, p in zip(ema_model.parameters(), model.parameters()):
        if p_ema is not p:
            p_ema.lerp_(p, 1 - rate)
