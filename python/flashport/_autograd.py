"""torch.autograd.Function over fa_fwd / fa_bwd (imported only when torch tensors are used)."""
import torch

from . import _core


class FlashAttnFunction(torch.autograd.Function):
    """out, lse = f(q, k, v); backward runs fa_bwd with the saved q, k, v, out, lse and dropout seed/offset."""

    @staticmethod
    def forward(ctx, q, k, v, problem, needs_lse):
        out, lse, rng = _core.forward(q, k, v, problem, return_lse=True, with_backward=True)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.problem = problem
        ctx.rng_state = rng
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _core.backward(dout, q, k, v, out, lse, ctx.problem, ctx.rng_state)
        return dq, dk, dv, None, None


def attention(q, k, v, problem, return_lse):
    out, lse = FlashAttnFunction.apply(q, k, v, problem, return_lse)
    return out, lse
