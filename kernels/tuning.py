"""How our kernels pick their tile sizes: autotuning on a GPU, one fixed config under the interpreter.

`@triton.autotune` needs a GPU driver to benchmark candidates and crashes under `TRITON_INTERPRET=1`
on a machine without one ("0 active drivers"). The interpreter is only for correctness, so there we
launch the plain `@triton.jit` function with a fixed config that is small enough to be quick in numpy
and large enough to exercise masking on the shapes the tests use.

Triton decides interpreter or compiler when a function is decorated, so this is read once, at import.
"""
import os

import triton

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def tuned(configs, key, interpret_config, **autotune_kwargs):
    """Decorate a `@triton.jit` kernel: autotuned on `key` on a GPU, `interpret_config` under the interpreter.

    Launch the result as `kernel[grid](*args)`; it supplies the meta-parameters in both modes.
    """

    def wrap(jitted):
        if INTERPRET:
            return _FixedConfig(jitted, interpret_config)
        return triton.autotune(configs=configs, key=key, **autotune_kwargs)(jitted)

    return wrap


class _FixedConfig:
    def __init__(self, jitted, config: dict):
        self.fn = jitted
        self.config = dict(config)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            meta = {**self.config, **kwargs}
            g = grid(meta) if callable(grid) else grid
            return self.fn[g](*args, **meta)

        return launch


def configs(*rows, names=("BLOCK_M", "BLOCK_N", "BLOCK_K")):
    """`triton.Config`s from compact rows `(bm, bn, bk, num_warps, num_stages)`; GROUP_M fixed at 8."""
    return [
        triton.Config({**dict(zip(names, row[: len(names)])), "GROUP_M": 8}, num_warps=row[-2], num_stages=row[-1])
        for row in rows
    ]
