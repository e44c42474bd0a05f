"""Bad input, bad files and hostile files: an `error:` line and exit code 2 before any work, never a
traceback, never code run from a file; and the public API refusing what it cannot build."""
import math
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from highway import HighwayConv2d, HighwayLinear, cifar_convnet, highway_mlp, highway_stack, mnist_convnet, \
    plain_mlp
from highway.bench.cli import main
from highway.bench.study.datasets import load_cifar
from highway.conv_models import plain_conv_stack
from highway.functional import highway_conv2d, highway_linear, highway_linear_population
from highway.gate_bias import gate_bias_for_depth


class RunsCode:
    """A pickle that, when loaded unsafely, creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "ran"
    torch.save({"meta": {"model": "highway"}, "state_dict": {}, "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    code, _, err = run_cli(["analyze", tmp_path / "evil.pt", "--out", tmp_path / "a"], capsys)
    assert code == 2 and "refused" in err and "Traceback" not in err
    assert not marker.exists()


def test_a_cifar_batch_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for i in range(1, 6):
        with open(tmp_path / f"data_batch_{i}", "wb") as f:
            pickle.dump({**batch, b"extra": RunsCode(marker)} if i == 3 else batch, f)
    with pytest.raises(ValueError, match="data_batch_3: refused to build"):
        load_cifar(tmp_path, 10)
    assert not marker.exists()


def ckpt_plain(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"meta": dict(model="plain", depth=3, width=16, in_features=64, num_classes=10, activation="relu",
                             gate_bias=None, dataset="digits"), "state_dict": plain_mlp(64, 16, 3, 10).state_dict()},
               path)
    return path


def _bad_inputs(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    ckpt = tmp_path / "nometa.pt"
    torch.save({"state_dict": {}}, ckpt)
    torch.save({"meta": dict(model="highway", depth=3, width=32, in_features=64, num_classes=10, activation="relu",
                             gate_bias=-2.0), "state_dict": highway_mlp(64, 16, 3, 10).state_dict()},
               tmp_path / "otherwidth.pt")
    torch.save({"meta": dict(model="highway", depth=3, width="wide", in_features=64, num_classes=10,
                             activation="relu", gate_bias=-2.0), "state_dict": {}}, tmp_path / "badmeta.pt")
    torch.save({"meta": dict(model="highway", depth=3, width=16, in_features=64, num_classes=3, activation="relu",
                             gate_bias=-2.0), "state_dict": highway_mlp(64, 16, 3, 3).state_dict()},
               tmp_path / "nodataset.pt")  # 3 classes: digits (64 features, 10 classes) does not fit it
    out = tmp_path / "out"
    return {
        "analyze a checkpoint that names no data set": ["analyze", tmp_path / "nodataset.pt", "--out", out],
        "analyze a plain net's checkpoint": ["analyze", ckpt_plain(tmp_path), "--out", out],
        "analyze on a data set of other images": ["analyze", tmp_path / "nodataset.pt", "--dataset", "digits", "--out",
                                                  out],
        "analyze a checkpoint whose weights are another net's": ["analyze", tmp_path / "otherwidth.pt", "--out", out],
        "analyze a checkpoint whose meta builds no net": ["analyze", tmp_path / "badmeta.pt", "--out", out],
        "compare on empty directories": ["report", "--compare", tmp_path / "e1", tmp_path / "e2"],
        "analyze a text file": ["analyze", tmp_path / "notes.pt", "--out", out],
        "analyze a directory": ["analyze", tmp_path, "--out", out],
        "analyze a checkpoint without meta": ["analyze", ckpt, "--out", out],
        "--out naming a file": ["throughput", "--depth", "1", "--out", tmp_path / "afile"],
        "--out under a file": ["converge", "--out", tmp_path / "afile" / "sub"],
        "--out not writable": ["throughput", "--depth", "1", "--out", "/sys/highway-bench-test"],
        "--device foo": ["throughput", "--depth", "1", "--device", "foo", "--out", out],
        "--device cuda:7": ["profile", "--device", "cuda:7", "--out", out],
        "--threads 0": ["throughput", "--depth", "1", "--threads", "0", "--out", out],
        "converge depth 1 with highway": ["converge", "--model", "plain", "highway", "--depth", "1", "--out", out],
        "converge gate bias nan": ["converge", "--gate-bias", "-2", "nan", "--out", out],
        "converge decay -1": ["converge", "--decay", "-1", "--out", out],
        "converge epochs -1": ["converge", "--epochs", "-1", "--out", out],
        "converge trials 0": ["converge", "--trials", "0", "--out", out],
        "converge batch 0": ["converge", "--batch", "0", "--out", out],
        "converge lr 0": ["converge", "--lr", "0", "--out", out],
        "analyze --samples 0": ["analyze", tmp_path / "notes.pt", "--samples", "0", "--out", out],
    }


BAD_NAMES = [  # the keys of _bad_inputs, which needs tmp_path to build
    "compare on empty directories", "analyze a text file",
    "analyze a checkpoint whose weights are another net's", "analyze a checkpoint whose meta builds no net",
    "analyze a directory", "analyze a checkpoint without meta", "analyze a checkpoint that names no data set",
    "analyze a plain net's checkpoint", "analyze on a data set of other images",
    "--out naming a file", "--out under a file", "--out not writable", "--device foo", "--device cuda:7",
    "--threads 0", "converge depth 1 with highway", "converge gate bias nan", "converge decay -1",
    "converge epochs -1", "converge trials 0", "converge batch 0", "converge lr 0", "analyze --samples 0",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_input_is_an_error_line_before_any_work(name, tmp_path, capsys):
    if name == "--out not writable" and os.access("/sys", os.W_OK) and os.path.isdir("/sys/highway-bench-test"):
        pytest.skip("/sys is writable here")
    if name == "--device cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    code, out, err = run_cli(_bad_inputs(tmp_path)[name], capsys)
    assert code == 2, (out, err)
    assert "error:" in err and "Traceback" not in err
    out_dir = tmp_path / "out"
    assert not any(out_dir.glob("*.csv")) and not any(out_dir.glob("*.sqlite"))  # nothing ran


def test_cuda_on_a_machine_without_one_is_an_error_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run_cli(["throughput", "--depth", "1", "--device", "cuda", "--out", tmp_path], capsys)
    assert code == 2 and "no CUDA GPU" in err


def test_a_study_where_every_trial_diverges_says_so(tmp_path, capsys):
    code, out, _ = run_cli(["converge", "--dataset", "digits", "--model", "highway", "--depth", "3", "--trials", "1",
                            "--epochs", "1", "--lr", "10000", "--momentum", "0.99", "--out", tmp_path,
                            "--no-progress"], capsys)
    assert code == 0 and "every trial diverged" in out and "Empty DataFrame" not in out


# --- the public API --------------------------------------------------------------------------------------

API_ERRORS = {
    "even kernel in a plain conv stack": (lambda: plain_conv_stack(4, 3, kernel_size=2), "odd"),
    "infinite gate_std": (lambda: gate_bias_for_depth(10, gate_std=math.inf), "gate_std must be a finite"),
    "width 0 in a stack": (lambda: highway_stack(0, 3), "width must be"),
    "fractional conv width": (lambda: mnist_convnet(width=2.5), "width must be a positive integer"),
    "conv width 0": (lambda: mnist_convnet(width=0), "width must be"),
    "no classes (conv)": (lambda: mnist_convnet(num_classes=0), "num_classes must be"),
    "no classes (cifar)": (lambda: cifar_convnet(num_classes=0), "num_classes must be"),
    "no classes (mlp)": (lambda: highway_mlp(784, 50, 10, 0), "num_classes must be"),
    "True as a width": (lambda: highway_mlp(784, True, 10, 10), "width must be"),
    "True as a depth": (lambda: highway_stack(8, True), "depth must be"),
    "True as a layer width": (lambda: HighwayLinear(True), "width must be"),
    "auto on a single layer": (lambda: HighwayLinear(50, gate_bias="auto"), "highway_mlp"),
    "auto on a single conv layer": (lambda: HighwayConv2d(8, gate_bias="auto"), "gate_bias_for_depth"),
    "unknown conv kind": (lambda: mnist_convnet(kind="resnet"), "kind must be 'highway' or 'plain'"),
    "unknown cifar arch": (lambda: cifar_convnet(arch="D"), "arch must be 'A', 'B' or 'C'"),
    "unknown cifar head": (lambda: cifar_convnet(head="attention"), "head must be 'linear' or 'gap'"),
    "a stacked net of one layer": (lambda: highway_mlp(784, 50, 1, 10, stack=True), "stack=True needs depth >= 2"),
    "a population layer without its trial axis": (
        lambda: highway_linear_population(torch.randn(4, 8), torch.randn(2, 16, 8), torch.randn(2, 16)),
        r"x must be \(P, B, N\)"),
    "a population's weights for other trials": (
        lambda: highway_linear_population(torch.randn(3, 4, 8), torch.randn(2, 16, 8), torch.randn(3, 16)),
        r"weight must have shape \(P, 2N, N\) = \(3, 16, 8\)"),
    "a population's bias for another width": (
        lambda: highway_linear_population(torch.randn(3, 4, 8), torch.randn(3, 16, 8), torch.randn(3, 8)),
        r"bias must have shape \(P, 2N\) = \(3, 16\)"),
}


@pytest.mark.parametrize("name", list(API_ERRORS))
def test_the_api_refuses_what_it_cannot_build(name):
    build, words = API_ERRORS[name]
    with pytest.raises(ValueError, match=words):
        build()


def test_a_positive_gate_bias_is_warned_about():
    with pytest.warns(UserWarning, match="positive"):
        HighwayLinear(8, gate_bias=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HighwayLinear(8, gate_bias=-1.0)  # the usual case: silent


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_empty_shapes_get_the_same_answer_on_every_backend(backend):
    with pytest.raises(ValueError, match="at least one feature"):
        highway_linear(torch.randn(3, 0), torch.randn(0, 0), torch.randn(0), backend=backend)
    w, b = torch.randn(8, 4, 3, 3), torch.randn(8)
    with pytest.raises(ValueError, match="at least one channel and one pixel"):
        highway_conv2d(torch.randn(2, 4, 0, 5), w, b, backend=backend)
    assert highway_conv2d(torch.randn(0, 4, 5, 5), w, b, backend=backend).shape == (0, 4, 5, 5)  # empty batch


@pytest.mark.parametrize("triton_version,numpy_version,fixes", [
    ("3.0.0", "2.2.6", ("numpy<2", "triton>=3.2")), ("3.1.0", "2.0.0", ("numpy<2", "triton>=3.2")),
    ("3.2.0", "2.2.6", None), ("3.0.0", "1.26.4", None), ("3.9.0", "2.4.1", None),
    ("3.6.0", "2.4.6", ("numpy<2.4", "triton>=3.7")), ("3.2.0", "2.5.2", ("numpy<2.4", "triton>=3.7")),
    ("3.6.0", "2.3.5", None), ("3.7.0", "2.4.6", None),
])
def test_an_interpreter_that_would_fail_or_lose_every_store_is_named(triton_version, numpy_version, fixes):
    """Triton 3.0 and 3.1's interpreter under numpy 2 returns every kernel's output as it was allocated, without
    an error; 3.2 to 3.6's fails in every GEMM's loop under numpy 2.4. Importing the kernels under
    TRITON_INTERPRET=1 there raises instead, naming both fixes."""
    from highway.kernels.launch import interpreter_problem

    problem = interpreter_problem(triton_version, numpy_version)
    assert (problem is not None) == (fixes is not None)
    if fixes:
        assert all(f" {fix}" in problem for fix in fixes) and triton_version in problem and numpy_version in problem
