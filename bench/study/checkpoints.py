"""The best trial of each (arm, depth), kept as a checkpoint for the gate analysis.

A checkpoint is `{"meta": plain types, "state_dict": tensors}`, so it loads with `weights_only=True`:
reading one never runs code from the file. `checkpoints/index.json` holds every checkpoint's meta,
so that keeping the best needs no loading at all.
"""
import json
import pickle
import warnings
from pathlib import Path

import torch

from highway.bench.schema import CHECKPOINT_DIR, CHECKPOINT_INDEX, CHECKPOINT_SUFFIX, arm_id, checkpoint_name
from highway.models import highway_mlp, plain_mlp

META_KEYS = ("model", "depth", "width", "in_features", "num_classes", "activation", "gate_bias")


def save_if_best(out, meta: dict, state_dict: dict, final_loss: float) -> Path | None:
    """Keep `state_dict` as the checkpoint of its (dataset, arm, depth) when `final_loss` beats the one
    kept so far; the checkpoint's path, or None when it did not."""
    directory = Path(out) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    index_path = directory / CHECKPOINT_INDEX
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    name = checkpoint_name(meta["dataset"], meta["model"], meta["gate_rule"], meta["depth"])
    if name in index and not final_loss < index[name]["train_loss"]:
        return None
    meta = {**meta, "arm": arm_id(meta["model"], meta["gate_rule"]), "train_loss": final_loss}
    path = directory / f"{name}{CHECKPOINT_SUFFIX}"
    torch.save({"meta": meta, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}, path)
    index[name] = meta
    index_path.write_text(json.dumps(index, indent=1))
    return path


def load_checkpoint(path, backend: str = "auto"):
    """(net, meta) from a checkpoint written by the convergence study. Loads tensors and plain types
    only (`weights_only=True`); anything else in the file is refused with a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols say nothing to our users
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path} was refused: it is not a file of tensors and plain values, as `highway-bench "
                         f"converge` writes, and loading anything else could run code from it") from None
    except (EOFError, RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} is not a checkpoint written by `highway-bench converge`: {reason}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("meta"), dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a checkpoint written by `highway-bench converge` (no meta/state_dict)")
    meta = ckpt["meta"]
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path}: checkpoint meta lacks {missing}")
    if meta["model"] not in ("highway", "plain"):
        raise ValueError(f"{path}: checkpoint meta names model {meta['model']!r}; expected 'highway' or 'plain'")
    try:
        if meta["model"] == "highway":
            net = highway_mlp(meta["in_features"], meta["width"], meta["depth"], meta["num_classes"],
                              meta["activation"], meta["gate_bias"], backend)
        else:
            net = plain_mlp(meta["in_features"], meta["width"], meta["depth"], meta["num_classes"], meta["activation"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: checkpoint meta describes no net we build: {e}") from None
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:  # the weights of another net, or no state dict at all
        reason = " ".join(str(e).split())[:300]
        raise ValueError(f"{path}: its weights do not fit the net its meta describes: {reason}") from None
    return net.eval(), meta
