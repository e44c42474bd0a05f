"""The weight and bias gradients of one layer as views of a single buffer.

A deep stack of small layers is bound by launches: one buffer means one zeroing launch and one cast back
to the parameters' dtype per layer, where separate dW and db would need two of each.
"""
import torch

from highway.kernels.launch import uses_atomics


class WeightGradBuffer:
    """dweight and dbias for a weight-gradient kernel. fp32 and zeroed when the reduction's splits meet
    through atomics, else the parameters' own dtype (each output written once, by one program)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, split: int | None):
        if split is not None and (isinstance(split, bool) or not isinstance(split, int) or split < 1):
            raise ValueError(f"split must be a positive integer or None, got {split!r}")
        self.use_atomic = uses_atomics(split)
        self.shapes, self.dtype = (weight.shape, bias.shape), weight.dtype
        dtype = torch.float32 if self.use_atomic else weight.dtype
        self.flat = torch.zeros(weight.numel() + bias.numel(), device=weight.device, dtype=dtype)
        self.dweight, self.dbias = self._views(self.flat)

    def _views(self, flat):
        n = self.shapes[0].numel()
        return flat[:n].view(self.shapes[0]), flat[n:].view(self.shapes[1])

    def result(self):
        """(dweight, dbias) in the parameters' dtype. They share storage: a caller that hands them to code
        which may write into one of them in place (an optimizer does not) should clone."""
        return self._views(self.flat.to(self.dtype))
