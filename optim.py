"""The optimisers of the official recipe, written out: AdamATan2 for the network, SignSGD for the
puzzle embedding, and the EMA of the weights that evaluation uses."""
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
    """w <- w * (1 - lr * wd) - lr * sign(grad), for the puzzle-embedding rows used in the batch."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                # rows of puzzles absent from the batch have zero gradient and stay untouched
                used = (p.grad != 0).any(-1, keepdim=True)
                lr, wd = group["lr"], group["weight_decay"]
                decayed = p * (1 - lr * wd) - lr * p.grad.sign()
                p.copy_(torch.where(used, decayed, p))


@torch.no_grad()
def ema_update(ema_model, model, rate: float):
    # shadow <- rate * shadow + (1 - rate) * weights; the puzzle embedding is copied, not averaged,
    # as in the official code where it is a buffer outside the EMA
    for (name, p_ema), p in zip(ema_model.named_parameters(), model.parameters()):
        if name == "puzzle_emb":
            p_ema.copy_(p)
        else:
            p_ema.lerp_(p, 1 - rate)
