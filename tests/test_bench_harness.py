"""The benchmark harness on tiny CPU sweeps: rows, resume, failures as rows, the correctness gate, the
FLOP formulas, the CLI and the profiler."""
import gzip
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import highway.bench.harness.sweep as tp
from highway.bench.cli import build_parser, main
from highway.bench.harness.backends import BACKENDS, Backend
from highway.bench.harness.cases import Case, build_stack, layer_by_layer, make_inputs, make_step
from highway.bench.harness.flops import stack_work
from highway.bench.harness.profile import profile_config
from highway.bench.schema import STORE_FILE

TINY = dict(model=["highway"], layer=["dense"], depth=[1, 3], width=[16], dtype=["fp32"], batch=[8],
            backend=["torch"], mode=["fwd", "fwd+bwd"])
REQUIRED = ["model", "layer", "depth", "width", "dtype", "batch", "backend", "mode", "status", "median_ms", "p20_ms",
            "p80_ms", "tflops", "gbps", "peak_mem_mb", "device", "commit"]


def sweep(out, **overrides):
    return tp.throughput_sweep(out, progress=False, device="cpu", **{**TINY, **overrides})


def test_rows_are_written_with_the_documented_columns(tmp_path):
    df = sweep(tmp_path)
    assert len(df) == 4 and (df["status"] == "ok").all()
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert set(REQUIRED) <= set(on_disk.columns) and len(on_disk) == 4
    assert (on_disk["median_ms"] > 0).all() and (on_disk["p20_ms"] <= on_disk["p80_ms"]).all()
    assert (on_disk["device_type"] == "cpu").all() and on_disk["device"].str.startswith("CPU").all()
    run = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0])
    assert {"torch", "triton", "commit", "command", "timestamp", "device", "cuda", "driver"} <= set(run)


def test_rerun_resumes_and_overwrite_redoes(tmp_path, monkeypatch):
    sweep(tmp_path)
    calls = []
    real = tp.run_case
    monkeypatch.setattr(tp, "run_case", lambda case, *a, **k: calls.append(case) or real(case, *a, **k))
    df = sweep(tmp_path, depth=[1, 3, 5])
    assert [c.depth for c in calls] == [5, 5] and len(df) == 6
    calls.clear()
    df = sweep(tmp_path, depth=[1], overwrite=True)
    assert len(calls) == 2 and len(df) == 2
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk) == 6 and on_disk["run_id"].nunique() == 3  # one row per configuration, the newest


def test_an_interrupted_sweep_keeps_finished_rows_and_resumes(tmp_path, monkeypatch):
    real = tp.run_case

    def interrupt_third(case, *a, **k):
        if case.depth == 3 and case.mode == "fwd+bwd":
            raise KeyboardInterrupt
        return real(case, *a, **k)

    monkeypatch.setattr(tp, "run_case", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 3
    with sqlite3.connect(tmp_path / STORE_FILE) as db:  # the interrupted configuration is free for any run
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    monkeypatch.setattr(tp, "run_case", real)
    assert len(sweep(tmp_path)) == 4


def test_a_failing_configuration_becomes_a_status_row(tmp_path, monkeypatch):
    real = tp.build_stack

    def broken(case, *a, **k):
        if case.depth == 3:
            raise RuntimeError("injected failure")
        return real(case, *a, **k)

    monkeypatch.setattr(tp, "build_stack", broken)
    df = sweep(tmp_path, mode=["fwd"])
    status = dict(zip(df["depth"], df["status"]))
    assert status[1] == "ok" and status[3] == "error: RuntimeError: injected failure"
    # a failure is a row, so a re-run skips it; once fixed, --retry-failed runs it (and only it) again
    monkeypatch.setattr(tp, "build_stack", real)
    calls = []
    monkeypatch.setattr(tp, "run_case", lambda case, *a, real=tp.run_case, **k: calls.append(case) or real(case, *a, **k))
    assert set(sweep(tmp_path, mode=["fwd"])["status"]) == {"ok", "error: RuntimeError: injected failure"} and not calls
    df = sweep(tmp_path, mode=["fwd"], backend=["torch", "compile-cudagraphs"], retry_failed=True)
    assert sorted((c.backend, c.depth) for c in calls) == [("compile-cudagraphs", 1), ("compile-cudagraphs", 3),
                                                            ("torch", 3)]
    assert (df[df["backend"] == "torch"]["status"] == "ok").all()
    assert df[df["backend"] == "compile-cudagraphs"]["status"].str.startswith("unsupported").all()  # on a CPU
    calls.clear()
    sweep(tmp_path, mode=["fwd"], backend=["torch", "compile-cudagraphs"], retry_failed=True)
    assert not calls  # "unsupported" is a result, not a failure


def test_unsupported_backends_are_rows_with_a_reason(tmp_path):
    df = sweep(tmp_path, depth=[1], mode=["fwd"], backend=["torch", "triton", "compile-cudagraphs"])
    status = dict(zip(df["backend"], df["status"]))
    assert status["torch"] == "ok"
    assert status["triton"].startswith("unsupported:") and "GPU" in status["triton"]
    assert status["compile-cudagraphs"].startswith("unsupported:")


class ScaleBy(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


def test_the_correctness_gate_catches_a_wrong_backend(tmp_path, monkeypatch):
    off_by_one_percent = Backend("wrong", "torch", prepare=lambda net: torch.nn.Sequential(net, ScaleBy(1.01)))
    monkeypatch.setitem(BACKENDS, "wrong", off_by_one_percent)
    df = sweep(tmp_path, depth=[3], backend=["torch", "wrong"])
    wrong = df[df["backend"] == "wrong"]
    assert wrong["status"].str.startswith("mismatch").all() and wrong["median_ms"].isna().all()
    assert (df[df["backend"] == "torch"]["status"] == "ok").all()


def test_fp32_rows_run_at_the_precision_their_dtype_names(tmp_path, monkeypatch):
    """"tf32" and "fp32" are one dtype at two precisions; every backend of a row, eager and the gate's
    baselines included, runs at its row's, for matmuls and cuDNN's convolutions alike, and the process gets its
    own back."""
    seen = []

    def spy(net):
        seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32))
        return net

    monkeypatch.setitem(BACKENDS, "spy", Backend("spy", "torch", prepare=spy))
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    df = sweep(tmp_path, depth=[1], dtype=["tf32", "fp32", "bf16"], backend=["torch", "spy"], mode=["fwd"])
    assert seen == [("high", True), ("highest", False), before]  # bf16 leaves the process's setting
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
    assert (df["status"] == "ok").all() and list(df["dtype"]) == ["tf32", "tf32", "fp32", "fp32", "bf16", "bf16"]
    # the same fp32 tensors either way: the table's rate for the precision the row names
    from highway.bench.harness.devices import peak_for

    assert peak_for("NVIDIA H200", "tf32")[0] > 5 * peak_for("NVIDIA H200", "fp32")[0]
    assert peak_for("NVIDIA H200", "tf32x3")[0] == peak_for("NVIDIA H200", "tf32")[0] / 3  # three products a product


@pytest.mark.parametrize("width,dtype,words", [(128, "tf32", None), (128, "bf16", None), (64, "fp32", None),
                                               (65, "fp32", "up to 64 in fp32 (IEEE dots; tf32 holds 128)"),
                                               (64, "tf32x3", None),
                                               (65, "tf32x3", "up to 64 in tf32x3 (3xTF32 dots; tf32 holds 128)"),
                                               (129, "tf32", "up to 128 in tf32")])
def test_the_depth_fused_backends_say_where_ieee_fp32_stops(width, dtype, words):
    """IEEE fp32 takes the per-layer kernels past width 64 (`why_the_stack_does_not_fit`): its stack rows are
    unsupported with the reason, before anything is built, whatever the process's own precision."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        for name in ("triton-stack", "triton-stack-recompute", "triton-stack-atomic"):
            reason = BACKENDS[name].applies_to(Case("highway", "dense", 10, width, dtype, 128, name, "train"))
            assert reason is None if words is None else words in reason
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("name", ["triton-stack", "triton-stack-recompute", "triton-stack-atomic"])
def test_the_depth_fused_backends_time_the_same_net(name):
    """What the GPU times, built here and run under the interpreter: the same outputs and gradients as the
    per-layer stack it is made from (the correctness gate on a GPU compares them with float64 too)."""
    case = Case("highway", "dense", 3, 16, "fp32", 8, name, "train")
    net = build_stack(case, BACKENDS[name].layer_backend, torch.device("cpu"))
    timed = BACKENDS[name].prepare(net)
    assert type(timed).__name__ == "HighwayStack" and timed.backend == "triton-stack"
    x = torch.randn(8, 16)
    results = []
    for module in (net, timed):
        xi = x.clone().requires_grad_()
        y = module(xi)
        y.square().sum().backward()
        weight_grad = timed.weight.grad if module is timed else torch.stack([layer.weight.grad for layer in net])
        results.append((y, xi.grad, weight_grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["highway", "plain"])
def test_layers_compiled_one_by_one_share_one_graph_at_any_depth(model):
    """compile-layers-cudagraphs, the CUDA-graph baseline a short lease can compile at depth 1000: its layers
    give eager's outputs and gradients, and compiling 12 layers compiles one layer's graphs, not 12."""
    from torch._dynamo.utils import counters

    case = Case(model, "dense", 12, 16, "fp32", 8, "compile-layers-cudagraphs", "fwd+bwd")
    eager = build_stack(case, "torch", torch.device("cpu"))
    compiled = BACKENDS[case.backend].prepare(build_stack(case, "torch", torch.device("cpu")))
    x, dy = make_inputs(case, torch.device("cpu"))
    want = make_step("fwd+bwd", eager, x, dy)()
    counters.clear()
    got = make_step("fwd+bwd", compiled, x, dy)()
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["fwd", "train"])
def test_the_cuda_graph_baselines_pass_the_gate_on_a_gpu(tmp_path, mode):
    """Both CUDA-graph baselines on a GPU: the whole net compiled with its own graphs, and the layers compiled
    one by one with the whole step (optimizer included) captured by the harness and timed as replays."""
    df = tp.throughput_sweep(tmp_path, progress=False, device="cuda", model=["highway", "plain"], layer=["dense"],
                             depth=[6], width=[50], dtype=["bf16"], batch=[128], mode=[mode],
                             backend=["torch", "compile-cudagraphs", "compile-layers-cudagraphs"])
    assert (df["status"] == "ok").all(), df[["model", "backend", "status"]].to_string()
    assert set(df[df["backend"] == "compile-layers-cudagraphs"]["timer"]) == {"cuda-graph"}
    assert set(df[df["backend"] != "compile-layers-cudagraphs"]["timer"]) == {"cuda-events"}


@pytest.mark.gpu
def test_kernels_are_counted_on_a_gpu_per_layer_for_eager_and_once_for_the_stack(tmp_path):
    df = tp.throughput_sweep(tmp_path, progress=False, device="cuda", model=["highway"], layer=["dense"],
                             depth=[2, 40], width=[50], dtype=["fp32"], batch=[128], mode=["fwd", "train"],
                             backend=["torch", "triton-stack"])
    assert (df["status"] == "ok").all(), df[["depth", "mode", "backend", "status"]].to_string()
    kernels = df.set_index(["backend", "mode", "depth"])["kernels_per_step"]
    for mode in ("fwd", "train"):
        assert kernels["torch", mode, 40] >= kernels["torch", mode, 2] + 38  # at least one more a layer
        assert kernels["triton-stack", mode, 40] == kernels["triton-stack", mode, 2] > 0


def test_who_captures_the_step_in_a_cuda_graph():
    from highway.bench.harness.backends import register_backend

    captured = {name: (b.captured("events"), b.captured("graph")) for name, b in BACKENDS.items()}
    assert captured["torch"] == (False, True)  # only when --timer graph asks
    assert captured["compile-cudagraphs"] == (False, False)  # its own graphs are never captured again
    assert captured["compile-layers-cudagraphs"] == (True, True)  # the harness captures its whole step
    with pytest.raises(ValueError, match="cuda_graphs must be"):
        register_backend("graphs-by-magic", layer_backend="torch", cuda_graphs="always")


def test_backends_are_found_by_name_and_registered_once():
    from highway.bench.harness.backends import register_backend

    assert list(BACKENDS)[0] == "torch" and {"compile", "compile-cudagraphs", "triton", "gemm-only"} <= set(BACKENDS)
    register_backend("doubled", layer_backend="torch", needs_gpu="doubling")(lambda net: net)
    try:
        case = Case("highway", "dense", 1, 8, "fp32", 4, "doubled", "fwd")
        assert BACKENDS["doubled"].unsupported(case, torch.device("cpu")) == "doubling needs a CUDA GPU"
        with pytest.raises(ValueError, match="already registered"):
            register_backend("torch", layer_backend="torch")(lambda net: net)
        # the CLI's choices are the registry's names, read when the parser is built
        assert build_parser().parse_args(["throughput", "--backend", "doubled"]).backend == ["doubled"]
    finally:
        BACKENDS.pop("doubled")


def test_speedup_is_against_the_eager_row_of_the_same_shape(tmp_path):
    df = sweep(tmp_path, depth=[2], mode=["fwd"], backend=["compile", "torch"])
    torch_ms = df.loc[df["backend"] == "torch", "median_ms"].item()
    compiled = df[df["backend"] == "compile"].iloc[0]
    assert compiled["speedup_vs_torch"] == pytest.approx(torch_ms / compiled["median_ms"])


@pytest.mark.parametrize("model,layer,mode", [
    ("highway", "dense", "fwd"), ("highway", "dense", "fwd+bwd"), ("plain", "dense", "fwd"),
    ("plain", "dense", "fwd+bwd"), ("highway", "conv", "fwd"), ("highway", "conv", "fwd+bwd"),
    ("plain", "conv", "fwd+bwd"),
])
def test_flop_formulas_match_torch_flop_counter(model, layer, mode):
    case = Case(model, layer, 3, 8, "fp32", 4, "torch", mode, spatial=5)
    x, dy = make_inputs(case, "cpu")
    net = build_stack(case, "torch", "cpu")
    with FlopCounterMode(display=False) as counter:
        if mode == "fwd":
            make_step(mode, net, x, dy)()
        else:  # what make_step's autograd.grad computes; FlopCounterMode cannot follow autograd.grad itself
            net(x.requires_grad_()).backward(dy)
    expected = stack_work(model, layer, 3, 8, 4, mode, 4, spatial=5, kernel_size=3).flops
    assert counter.get_total_flops() == expected


@pytest.mark.parametrize("mode,passes", [("fwd", 1), ("fwd+bwd", 3), ("train", 8)])
def test_weight_bytes_are_the_parameters_moved_per_mode(mode, passes):
    from highway import HighwayLinear

    params = sum(p.numel() for p in HighwayLinear(8).parameters())
    work = stack_work("highway", "dense", 5, 8, 4, mode, 2)
    assert work.weight_bytes == 5 * passes * params * 2
    assert work.weight_bytes < work.bytes  # a share of what a fused step moves, never more


def test_expand_orders_eager_first_and_rejects_bad_axes():
    configs = tp.expand(backend=["compile", "torch"], depth=[1], layer=["dense", "conv"], spatial=[8, 16])
    assert [c.backend for c in configs[:2]] == ["torch", "compile"]
    assert len(configs) == 2 * (1 + 2)  # conv expands over spatial sizes, dense does not
    with pytest.raises(ValueError, match="unknown backend"):
        tp.expand(backend=["cudnn"])
    with pytest.raises(ValueError, match="depth must be positive"):
        tp.expand(depth=[0])


def test_cli_runs_a_sweep_and_prints_a_table(tmp_path, capsys):
    rc = main(["throughput", "--depth", "1", "2", "--width", "16", "--batch", "4", "--backend", "torch", "triton",
               "--mode", "fwd", "--out", str(tmp_path), "--no-progress", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "median ms per step (CPU)" in out and "did not run" in out
    rows = pd.read_csv(tmp_path / "results.csv")
    assert len(rows) == 4
    timed = rows[rows["status"] == "ok"]
    assert (timed["weight_gbps"] > 0).all() and timed["pct_peak_bw_weights"].isna().all()  # no peak for a CPU
    assert timed["kernels_per_step"].isna().all()  # a CPU runs no kernels to count


def test_kernels_are_counted_from_the_profilers_gpu_events():
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from highway.bench.harness.profile import count_kernels

    event = lambda name, device=DeviceType.CUDA: SimpleNamespace(name=lambda: name, device_type=lambda: device)  # noqa: E731
    events = [event("_highway_stack_fwd_kernel"), event("ampere_sgemm_64x64_nn"), event("Memcpy HtoD (Pageable)"),
              event("Memset (Device)"), event("aten::mm", DeviceType.CPU), event("cudaLaunchKernel", DeviceType.CPU)]
    assert count_kernels(events) == 2
    # the raw events a real profile gives have the same face: on a CPU, every one of them is a host event
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.randn(4, 4).mm(torch.randn(4, 4))
    raw = prof.profiler.kineto_results.events()
    assert any(e.name() == "aten::mm" for e in raw) and count_kernels(raw) == 0


def test_a_kernel_count_that_fails_costs_the_row_its_count_only(monkeypatch):
    import math
    from types import SimpleNamespace

    import highway.bench.harness.profile as hp

    def broken(**kwargs):
        raise RuntimeError("CUPTI could not be loaded")

    monkeypatch.setattr(hp.torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(hp, "profile", broken)
    with pytest.warns(RuntimeWarning, match="kernels per step not counted .*CUPTI could not be loaded"):
        assert math.isnan(hp.kernels_per_step(lambda: None, SimpleNamespace(type="cuda")))


@pytest.mark.parametrize("command", [[], ["throughput"], ["profile"], ["peaks"], ["converge"], ["analyze"], ["report"],
                                     ["quickstart"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: highway-bench" in capsys.readouterr().out


def test_profile_writes_a_trace_and_a_kernel_table(tmp_path):
    case = Case("highway", "dense", 2, 16, "fp32", 8, "torch", "train")
    table = profile_config(case, tmp_path, steps=2, warmup=1, device="cpu")
    with gzip.open(tmp_path / "trace.json.gz", "rt") as f:
        assert "traceEvents" in json.load(f)
    assert list(table.columns) == ["name", "calls", "total_ms", "mean_us", "share"]
    assert any("addmm" in name or "linear" in name for name in table["name"])
    assert table["share"].sum() == pytest.approx(1.0)


def test_gemm_only_reference_is_timed_without_the_gate(tmp_path):
    df = sweep(tmp_path, depth=[2], mode=["fwd", "fwd+bwd"], backend=["torch", "gemm-only"])
    gemm = df[df["backend"] == "gemm-only"]
    assert (gemm["status"] == "ok").all() and gemm["max_error"].isna().all() and (gemm["median_ms"] > 0).all()
    plain = sweep(tmp_path / "p", model=["plain"], depth=[2], mode=["fwd"], backend=["gemm-only"])
    assert plain["status"].iloc[0].startswith("unsupported")


class ScaleGrad(torch.nn.Module):
    def forward(self, x):
        return _ScaleGradFn.apply(x)


class _ScaleGradFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 1.05 * g


def test_a_train_step_is_gated_on_its_gradients(tmp_path, monkeypatch):
    # Right outputs, gradients scaled by 1.05: only a gate that checks gradients can see it.
    wrong = Backend("wrong-grad", "torch", prepare=lambda net: torch.nn.Sequential(net, ScaleGrad()))
    monkeypatch.setitem(BACKENDS, "wrong-grad", wrong)
    df = sweep(tmp_path, depth=[2], mode=["fwd", "train"], backend=["torch", "wrong-grad"])
    status = {(r.backend, r.mode): r.status for r in df.itertuples()}
    assert status[("wrong-grad", "fwd")] == "ok"
    assert status[("wrong-grad", "train")].startswith("mismatch") and status[("wrong-grad", "train")].endswith(
        "gradient)")  # the mismatch names the output furthest off: a gradient, not the output


def test_the_gate_names_its_outputs_and_wants_them_all(monkeypatch):
    from highway.bench.harness import cases
    from highway.bench.harness.cases import correctness_error, gate_output_name

    assert [gate_output_name(i) for i in (0, 1, 2, 5)] == [
        "the output", "the input's gradient", "layer 0's weight gradient", "layer 1's bias gradient"]
    case = Case("highway", "dense", 2, 8, "fp32", 4, "torch", "train")
    y = torch.ones(3, dtype=torch.float64)
    off = [y, y, y * 1.5, y]  # layer 0's weight gradient 50% off
    assert correctness_error(case, off, [y] * 4, [y] * 4)[1] == "layer 0's weight gradient"
    nan_first = iter([float("nan"), 1.0, 0.5, 1.0, 3.0, 1.0, 0.2, 1.0])  # (candidate, eager) per output
    monkeypatch.setattr(cases, "max_violation", lambda *a: next(nan_first))
    error, worst = correctness_error(case, [y] * 4, [y] * 4, [y] * 4)
    assert math.isnan(error) and worst == "the output"  # a NaN is not outbid by a later finite error
    monkeypatch.undo()
    with pytest.raises(ValueError, match="the gate got 3 outputs from torch, 4 from the reference"):
        correctness_error(case, [y] * 3, [y] * 4, [y] * 4)  # a gradient missing is no pass


def test_the_gate_compares_a_depth_fused_stack_layer_by_layer(tmp_path, monkeypatch):
    # The depth-fused stack holds every layer's weights in one (depth, 2W, W) tensor; its gradients must meet
    # the reference's per-layer ones (the first GPU run found every triton-stack row failing the gate on shapes).
    from highway.stack import HighwayStack

    stacked = Backend("stacked", "torch", prepare=lambda net: HighwayStack.from_layers(net, backend="torch"))
    monkeypatch.setitem(BACKENDS, "stacked", stacked)
    df = sweep(tmp_path, depth=[3], mode=["fwd", "train"], backend=["torch", "stacked"])
    assert (df["status"] == "ok").all(), df[["backend", "mode", "status"]]
    # the split is the reference's order: weight and bias of layer 0, of layer 1, ... (views, no copies)
    stack = HighwayStack(4, 3)
    params = list(stack.parameters())
    split = layer_by_layer(stack, params)
    assert [tuple(t.shape) for t in split] == [(8, 4), (8,)] * 3 and split[2].data_ptr() == params[0][1].data_ptr()


def test_highway_commit_names_the_rows_commit_over_a_travelling_git(monkeypatch):
    # A lease tool's copy of the tree can carry the .git of an older commit: the commit named wins.
    from highway.bench.harness import environment as env

    monkeypatch.delenv("HIGHWAY_COMMIT", raising=False)
    here = env.git_commit()
    assert here != "unknown"  # this checkout is a git repository
    monkeypatch.setenv("HIGHWAY_COMMIT", "7bbbf72")
    assert env.git_commit() == "7bbbf72"
    monkeypatch.delenv("HIGHWAY_COMMIT")
    monkeypatch.setattr(env, "_git", lambda *args: "")  # no git at all
    assert env.git_commit() == "unknown"


def test_a_missing_extra_is_an_error_line_that_names_the_install(monkeypatch, capsys):
    import highway.bench.cli as cli

    def report_without_matplotlib(args):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(cli, "cmd_report", report_without_matplotlib)
    assert main(["report", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "pip install 'highway-triton[report]'" in err


def test_cpu_timings_pin_and_record_the_threads(tmp_path, monkeypatch):
    seen = []
    real = tp.cpu_time
    monkeypatch.setattr(tp, "cpu_time", lambda fn, *a, **k: seen.append(torch.get_num_threads()) or real(fn, *a, **k))
    before = torch.get_num_threads()
    df = sweep(tmp_path, depth=[1], mode=["fwd"])
    assert seen == [1] and torch.get_num_threads() == before  # pinned while timing, restored after
    row = df.iloc[0]
    assert row["threads"] == 1 and row["load_avg"] >= 0 and row["spread"] >= 1
    assert row["noisy"] == (row["p80_ms"] / row["p20_ms"] > tp.NOISY_SPREAD)
    df = sweep(tmp_path / "two", depth=[1], mode=["fwd"], threads=2)
    assert df.iloc[0]["threads"] == 2


def test_pytest_benchmark_conventions(tmp_path):
    """The suite runs as tests under --benchmark-disable, honours --benchmark-min-rounds, and puts the
    configuration in extra_info."""

    root = Path(__file__).resolve().parents[1]
    select = ["-k", "dense-d10-w64 and torch and fwd"]
    run = subprocess.run([sys.executable, "-m", "pytest", "bench", "-q", "--benchmark-disable", *select],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "pytest", "bench", "-q", "--benchmark-only", *select,
                          "--benchmark-min-rounds", "7", "--benchmark-max-time", "0.001", f"--benchmark-json={out}"],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    (result,) = json.loads(out.read_text())["benchmarks"]
    assert result["stats"]["rounds"] >= 7
    info = result["extra_info"]
    assert {"shape", "dtype", "mode", "backend", "device", "depth", "width", "batch"} <= set(info)
    assert info["shape"] == [128, 64] and info["dtype"] == "fp32" and info["mode"] == "fwd"


def test_campaign_dry_run_prints_its_plan_and_where_the_budget_ends(capsys):
    assert main(["campaign", "--out", "unused", "--dry-run", "--budget-minutes", "9"]) == 0
    out = capsys.readouterr().out
    order = ["environment and peaks", "the depth-fused stack's targets", "recomputing",
             "population: the target's shape, P = 100 at depth 100", "atomics", "gpu-marked tests",
             "profile of the deepest configuration", "population: depth 10 and 100", "the paper's thin nets",
             "compiled whole at depth 1000", "convergence (paper protocol)", "report"]
    assert [out.index(step) for step in order] == sorted(out.index(step) for step in order)
    assert out.count("the budget runs out") == 1 and "min for everything left" in out
    assert not Path("unused").exists()  # a dry run writes nothing


def test_the_campaign_runs_the_targets_first_and_each_configuration_once():
    from highway.bench.cli.campaign import POPULATION_TARGET, THROUGHPUT_BLOCKS, WHOLE_NET_COMPILES, campaign_steps
    from highway.bench.harness.population_sweep import expand as expand_population

    first = tp.expand(**THROUGHPUT_BLOCKS[0][1])
    assert {(c.depth, c.backend) for c in first} == {(1000, "torch"), (1000, "triton-stack"),
                                                     (1000, "compile-layers-cudagraphs")}
    assert {(c.width, c.dtype, c.mode) for c in first} == {(w, d, m) for w in (50, 128) for d in ("bf16", "tf32")
                                                           for m in ("fwd", "train")}
    # shape by shape, eager first: a call cut short leaves whole ratios, the paper's width first
    assert [c.backend for c in first[:3]] == ["torch", "triton-stack", "compile-layers-cudagraphs"]
    assert first[0].width == 50
    # no whole-net compilation at depth 1000 (minutes a case) before the last throughput block
    blocks = [tp.expand(**axes) for _, axes in THROUGHPUT_BLOCKS]
    slow = [i for i, cases in enumerate(blocks)
            if any(c.depth == 1000 and c.backend in WHOLE_NET_COMPILES for c in cases)]
    assert slow == [len(blocks) - 1]
    # the targets' fp32 at torch's default precision too, where the stack holds it (IEEE dots: up to width 64)
    ieee = {(c.width, c.mode) for cases in blocks for c in cases
            if c.depth == 1000 and c.dtype == "fp32" and c.backend == "triton-stack"}
    assert {(50, "fwd"), (50, "train")} <= ieee
    # and in 3xTF32, the stack alone (torch has no 3xTF32: its rows are read against the IEEE ones), early
    x3 = [i for i, cases in enumerate(blocks) for c in cases if c.dtype == "tf32x3"]
    assert x3 and max(x3) == 1 and {c.backend for c in blocks[1]} <= {"triton-stack", "triton-stack-recompute"}
    assert {(c.depth, c.population) for c in expand_population(**POPULATION_TARGET)} == {(100, 100)}
    steps = campaign_steps(Path("unused"), torch.device("cpu"), False, [])
    assert steps[1].name.endswith(THROUGHPUT_BLOCKS[0][0]) and steps[-1].name == "report"


def test_the_campaign_estimates_the_paper_preset_at_each_precision_once(tmp_path, monkeypatch):
    import highway.bench.study.convergence as cv
    from highway.bench.cli import campaign

    seen = []
    monkeypatch.setattr(cv, "study_data", lambda *args: "the images")  # loaded once, for both precisions
    monkeypatch.setattr(cv, "expected_study_seconds", lambda study, device, data: seen.append(study) or
                        (3600.0 if study.precision == "fp32" and data == "the images" else 1200.0))
    step = {s.name: s for s in campaign.campaign_steps(tmp_path, torch.device("cpu"), False, [])}[
        "the paper preset's expected time, IEEE and 3xTF32"]
    outcome = step.run(time.monotonic() + 600)
    assert "fp32 60 min, tf32x3 20 min; target 30 min" in outcome
    assert [(s.name, s.depths, s.trials, s.precision) for s in seen] == [("paper", (10, 20, 50, 100), 100, p)
                                                                          for p in ("fp32", "tf32x3")]
    saved = json.loads((tmp_path / campaign.PAPER_ESTIMATE_FILE).read_text())
    assert saved["expected_seconds"] == {"fp32": 3600.0, "tf32x3": 1200.0} and saved["target_minutes"] == 30
    again = {s.name: s for s in campaign.campaign_steps(tmp_path, torch.device("cpu"), False, [])}
    assert again["the paper preset's expected time, IEEE and 3xTF32"].estimate_s == 0
    assert step.run(time.monotonic() + 600).startswith("already done") and len(seen) == 2


def test_a_campaign_run_again_skips_what_is_done_and_stays_on_one_device(tmp_path, monkeypatch, capsys):
    from highway.bench.cli import campaign

    monkeypatch.setattr(campaign, "THROUGHPUT_BLOCKS", [
        (what, dict(axes, depth=[2 + i], width=[8], batch=[4], backend=["torch"], dtype=["fp32"], mode=["fwd"]))
        for i, (what, axes) in enumerate(campaign.THROUGHPUT_BLOCKS[:4])])
    before = {s.name: s.estimate_s for s in campaign.campaign_steps(tmp_path, torch.device("cpu"), False, [])}
    tp.throughput_sweep(tmp_path / "throughput", progress=False, device="cpu",
                        **campaign.THROUGHPUT_BLOCKS[0][1])
    (tmp_path / "environment.json").write_text(json.dumps({"device": "NVIDIA H100 80GB HBM3"}))
    steps = campaign.campaign_steps(tmp_path, torch.device("cpu"), False, [])
    after = {s.name: s.estimate_s for s in steps}
    assert after["environment and peaks"] == 0 < before["environment and peaks"]
    assert after[steps[1].name] == 0 < before[steps[1].name] and "1 done" in steps[1].plan
    assert after[steps[2].name] == before[steps[2].name]  # another block: still to run
    for store in (tmp_path / "throughput").glob("results.sqlite*"):  # a copy of the tree without ignored files
        store.unlink()
    assert campaign.campaign_steps(tmp_path, torch.device("cpu"), False, [])[1].estimate_s == 0
    capsys.readouterr()
    assert main(["campaign", "--out", str(tmp_path), "--budget-minutes", "5", "--device", "cpu"]) == 2
    assert "holds a campaign run on NVIDIA H100 80GB HBM3; this is CPU" in capsys.readouterr().err
    (tmp_path / "environment.json").unlink()
    assert main(["campaign", "--out", str(tmp_path), "--budget-minutes", "5", "--device", "cpu",
                 "--dataset", f"idx:{tmp_path / 'no-such-dir'}"]) == 2  # before any step runs
    assert "no-such-dir does not exist" in capsys.readouterr().err and not (tmp_path / "environment.json").exists()


def test_the_campaigns_test_steps_run_once_and_name_real_files(tmp_path):
    from highway.bench.cli import campaign

    root = Path(__file__).resolve().parents[1]
    assert all((root / name).is_file() for name in campaign.KERNEL_TESTS)
    steps = {s.name: s for s in campaign.campaign_steps(tmp_path, torch.device("cpu"), False, [])}
    step = steps["gpu-marked tests"]
    outcome = step.run(time.monotonic() + 600)  # on a CPU every gpu-marked test is collected and skipped
    assert "skipped" in outcome and "error" not in outcome, outcome
    assert "skipped" in (tmp_path / "gpu-tests.log").read_text()
    assert step.run(time.monotonic() + 600).startswith("already run")
    again = {s.name: s for s in campaign.campaign_steps(tmp_path, torch.device("cpu"), False, [])}
    assert again["gpu-marked tests"].estimate_s == 0 < again["the kernel tests on this GPU"].estimate_s


def gpu_test_step(out, progress=False):
    """The campaign's gpu-marked tests step, into `out`, as this checkout makes it now."""
    from highway.bench.cli import campaign

    return {s.name: s for s in campaign.campaign_steps(out, torch.device("cpu"), progress, [])}["gpu-marked tests"]


def test_a_test_step_goes_on_where_an_earlier_run_stopped(tmp_path):
    """A lease that cuts a test step short leaves a ledger of the tests that ended; the next run at the same
    commit leaves them out, and the summary counts both runs. At another commit every test runs again."""
    from highway.bench.harness.environment import git_commit

    done = "tests/test_highway_linear_triton.py::test_tf32_matches_reference_on_gpu[7-50]"
    head = f"# commit {git_commit().removesuffix('+dirty')}"
    (tmp_path / "gpu-tests.ledger").write_text(f"{head}\npassed {done}\n")
    outcome = gpu_test_step(tmp_path).run(time.monotonic() + 600)
    assert outcome.startswith("1 passed, ") and "skipped" in outcome, outcome
    ledger = (tmp_path / "gpu-tests.ledger").read_text().splitlines()
    assert ledger[:2] == [head, f"passed {done}"] and len(ledger) > 2 and f"skipped {done}" not in ledger
    assert f"\n{len(ledger) - 2} skipped, " in (tmp_path / "gpu-tests.log").read_text()  # every test but that one
    assert gpu_test_step(tmp_path).estimate_s == 0
    assert gpu_test_step(tmp_path).run(time.monotonic() + 600).startswith("already run: 1 passed")
    # another commit's outcomes speak for other code: the tests run again, all of them
    (tmp_path / "gpu-tests.ledger").write_text(f"# commit 0123456789ab\npassed {done}\n")
    assert gpu_test_step(tmp_path).estimate_s > 0
    assert "passed" not in gpu_test_step(tmp_path).run(time.monotonic() + 600)
    assert (tmp_path / "gpu-tests.ledger").read_text().splitlines()[0] == head


def test_a_test_step_out_of_time_stops_its_tests_and_keeps_what_they_printed(tmp_path, monkeypatch, capsys):
    """The time box kills the run, says how far it got, and leaves the output it had written; while it runs it
    says how far it has got; the next run, given time, finishes."""
    from highway.bench.cli import campaign

    monkeypatch.setattr(campaign, "TESTS_MIN_S", 0)
    monkeypatch.setattr(campaign, "TESTS_PROGRESS_S", 1)

    outcome = gpu_test_step(tmp_path, progress=True).run(time.monotonic() + 0.5)  # too short to import torch
    assert outcome.startswith("stopped after ") and "with no test finished; the next run goes on" in outcome
    assert (tmp_path / "gpu-tests.partial.log").exists() and not (tmp_path / "gpu-tests.log").exists()
    assert "gpu-marked tests: none finished so far" in capsys.readouterr().out
    assert "skipped" in gpu_test_step(tmp_path, progress=True).run(time.monotonic() + 600)
    assert (tmp_path / "gpu-tests.log").exists() and not (tmp_path / "gpu-tests.partial.log").exists()


def test_kernels_that_fail_on_the_device_stop_the_campaign_before_anything_is_timed(tmp_path, monkeypatch, capsys):
    from highway.bench.cli import campaign

    failing = set()

    def run_case(case, device, baselines):
        bad = (case.backend, case.dtype) in failing
        return {"status": "mismatch: 3.1x the tolerance against float64" if bad else "ok"}

    monkeypatch.setattr(tp, "run_case", run_case)
    ran = []
    step = campaign.Step("a step", 1, lambda deadline: ran.append("a step") or "fine")
    monkeypatch.setattr(campaign, "campaign_steps", lambda *a: [step])
    # every case fails: nothing is timed
    failing.update((c["backend"], c["dtype"]) for c in campaign.SMOKE_CASES)
    assert campaign.run_campaign(tmp_path, 5, "cpu", progress=False) == 1
    out = capsys.readouterr().out
    assert "fail on this device, so nothing was timed" in out and not ran
    assert out.count("mismatch: 3.1x") == len(campaign.SMOKE_CASES) == 8
    # one dtype fails (TF32 on the first H200): it is named, and the campaign goes on
    failing.clear()
    failing.update({("triton-stack", "tf32"), ("triton-stack-recompute", "tf32")})
    assert campaign.run_campaign(tmp_path, 5, "cpu", progress=False) == 0
    out = capsys.readouterr().out
    assert "their rows will say so, the rest goes on" in out and out.count("mismatch: 3.1x") == 2
    assert "tf32 b=128 triton-stack train: mismatch" in out and ran == ["a step"]


def test_ctrl_c_stops_the_campaign_with_a_summary(tmp_path, monkeypatch, capsys):
    from highway.bench.cli import campaign

    ran = []

    def step(name, interrupt=False):
        def run(deadline):
            ran.append(name)
            if interrupt:
                raise KeyboardInterrupt
            return "fine"
        return campaign.Step(name, 1, run)

    monkeypatch.setattr(campaign, "campaign_steps",
                        lambda *a: [step("a"), step("b", interrupt=True), step("c"), step("report")])
    monkeypatch.setattr(campaign, "smoke_check", lambda device: [])
    assert campaign.run_campaign(tmp_path, 5, "cpu", progress=False) == 130
    out = capsys.readouterr().out
    assert ran == ["a", "b"] and "campaign stopped" in out and "b: stopped by Ctrl-C" in out


def test_no_report_gives_the_reports_reserve_to_the_steps(tmp_path, monkeypatch, capsys):
    from highway.bench.cli import campaign

    ran, time_left = [], []

    def step(name):
        def run(deadline):
            ran.append(name)
            time_left.append(deadline - time.monotonic())
            return "fine"
        return campaign.Step(name, 1, run)

    monkeypatch.setattr(campaign, "campaign_steps",  # the last argument: whether to draw the report
                        lambda *a: [step("a")] + ([step("report")] if a[-1] else []))
    monkeypatch.setattr(campaign, "smoke_check", lambda device: [])
    assert campaign.run_campaign(tmp_path, 5, "cpu", progress=False) == 0
    assert ran == ["a", "report"] and 300 - campaign.REPORT_RESERVE_S - 5 < time_left[0] <= 300 - campaign.REPORT_RESERVE_S
    ran.clear(), time_left.clear(), capsys.readouterr()
    assert main(["campaign", "--out", str(tmp_path), "--budget-minutes", "5", "--device", "cpu", "--no-report",
                 "--no-progress"]) == 0
    assert ran == ["a"] and 295 < time_left[0] <= 300
    assert f"draw it with `highway-bench report {tmp_path}" in capsys.readouterr().out


def test_the_gpu_lease_script_time_boxes_a_command_and_packs_its_folder(tmp_path):
    """The script a lent GPU machine runs (here without its install): Ctrl-C at the limit, then the folder
    packed for the trip back, split into parts that rebuild it."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu-lease.sh"
    folder, pack = tmp_path / "gallery", tmp_path / "pack"
    writer = (f"import os, pathlib, time; d = pathlib.Path({str(folder)!r}); d.mkdir(); "
              f"(d / 'rows.bin').write_bytes(os.urandom(17 << 20)); print('wrote', flush=True); time.sleep(60)")
    run = subprocess.run(["bash", str(script), "0.1", str(folder), sys.executable, "-c", writer], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PACK": str(pack), "HIGHWAY_LEASE_INSTALL": "0"})
    assert run.returncode == 124, run.stdout + run.stderr
    assert "wrote" in run.stdout and "stopped at the 0.1-minute limit" in run.stdout
    parts = sorted(pack.glob("results.tgz.part-*"))
    assert len(parts) == 2 and all(p.stat().st_size <= 15 << 20 for p in parts)
    assert "stopped at the 0.1-minute limit" in (pack / "lease.log").read_text()
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    subprocess.run(f"cat {' '.join(map(str, parts))} | tar xz -C {rebuilt}", shell=True, check=True)
    assert (rebuilt / str(folder).lstrip("/") / "rows.bin").read_bytes() == (folder / "rows.bin").read_bytes()


def test_the_gpu_lease_script_imports_the_checkout_through_links_when_pip_cannot(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu-lease.sh"
    run = subprocess.run(["bash", str(script), "1", str(tmp_path), "highway-bench", "campaign", "--out",
                          str(tmp_path / "c"), "--dry-run", "--device", "cpu"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HIGHWAY_LEASE_INSTALL": "links"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "campaign into" in run.stdout and "gpu-lease: exit 0" in run.stdout
    run = subprocess.run(["bash", str(script), "1", str(tmp_path), sys.executable, "-c",
                          "import highway.kernels.highway_stack as k; print(k.__file__)"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "HIGHWAY_LEASE_INSTALL": "links"})
    assert "/highway/kernels/highway_stack.py" in run.stdout  # the links' layout, not the installed checkout's


def test_the_summary_table_marks_noisy_rows():
    df = pd.DataFrame([dict(model="highway", layer="dense", depth=d, width=8, dtype="fp32", batch=4, mode="fwd",
                            backend="torch", status="ok", median_ms=1.0 + d, noisy=d == 2, device_type="cpu")
                       for d in (1, 2)])
    table = tp.summary_table(df)
    assert "3.000~" in table and "2.000~" not in table and "noisy" in table


POPULATION_TINY = dict(model=["highway", "plain"], depth=[3], width=[8], dtype=["fp32"], batch=[4],
                       backend=["torch", "triton"], population=[1, 3])


def test_the_population_axis_times_both_arrangements_side_by_side(tmp_path, capsys):
    from highway.bench.harness.population_sweep import population_sweep, population_table
    from highway.reports.claims import population_claims
    from highway.reports.figure_style import report_style
    from highway.reports.harness_figures import population_figures
    from highway.reports.loading import load_results

    df = population_sweep(tmp_path, progress=False, device="cpu", **POPULATION_TINY)
    assert len(df) == 8
    ok = df[df["status"] == "ok"]
    assert len(ok) == 4 and (ok["backend"] == "torch").all()  # triton timing needs a GPU: a row that says so
    triton = df[df["backend"] == "triton"].set_index("model")["status"]
    assert triton["highway"].str.contains("needs a CUDA GPU").all() and triton["plain"].str.contains("no highway").all()
    assert (ok["population_ms"] > 0).all() and (ok["one_by_one_ms"] > 0).all() and (ok["max_error"] <= 1).all()
    assert ok["speedup"].to_numpy() == pytest.approx((ok["one_by_one_ms"] / ok["population_ms"]).to_numpy())
    assert ok["trials_per_s"].to_numpy() == pytest.approx((ok["population"] / ok["population_ms"] * 1e3).to_numpy())
    assert ok["samples_per_s"].to_numpy() == pytest.approx((ok["trials_per_s"] * ok["batch"]).to_numpy())
    assert (pd.read_csv(tmp_path / "population.csv")["status"] == "ok").sum() == 4
    table = population_table(df)
    for row in ok.itertuples():  # each speed-up with the range its calls' fifths allow
        low, high = row.one_by_one_p20_ms / row.population_p80_ms, row.one_by_one_p80_ms / row.population_p20_ms
        assert low <= row.speedup <= high and f"{low:.3g}-{high:.3g}" in table
    assert len(population_sweep(tmp_path, progress=False, device="cpu", **POPULATION_TINY)) == 8
    assert "already done" in capsys.readouterr().out
    data = load_results([tmp_path])
    with report_style():
        (figure,) = population_figures(data.population)
    assert figure.slug == "population-cpu"
    nets = data.population[["model", "depth", "width", "dtype"]].drop_duplicates()
    titles = [ax.get_title() for ax in figure.fig.axes]  # a row per net: its rates, then its speed-up
    assert titles[1::2] == ["population ÷ one by one"] * len(nets) and len(titles) == 2 * len(nets)
    assert len({round(ax.get_position().x0, 3) for ax in figure.fig.axes[0::2]}) == 1  # one column of rates
    assert all(c["verdict"] == "no data" for c in population_claims(data.population))  # not the targets' shapes
    assert not any(ax.get_legend_handles_labels()[1] == ["target: 3x at P = 32"] for ax in figure.fig.axes)
    # at the CPU target's shape its speed-up panel marks the target
    at_target = data.population.assign(depth=20, width=50)
    with report_style():
        figures = population_figures(at_target)
    marked = [ax for f in figures for ax in f.fig.axes if ax.get_legend_handles_labels()[1] == ["target: 3x at P = 32"]]
    assert marked and all(ax.get_title() == "population ÷ one by one" for ax in marked)
    at32 = at_target.assign(population=32)
    cpu_claim = next(c for c in population_claims(at32) if c["claim"].startswith("CPU"))
    r = at32[(at32["status"] == "ok") & (at32["backend"] == "torch") & (at32["model"] == "highway")].iloc[0]
    low, high = r["one_by_one_p20_ms"] / r["population_p80_ms"], r["one_by_one_p80_ms"] / r["population_p20_ms"]
    assert cpu_claim["measured"].startswith(f"{r['speedup']:.2f}x (calls' fifths: {low:.2f}-{high:.2f}x")


@pytest.mark.parametrize("backend", ["triton", "triton-stack"])
def test_a_population_of_fused_nets_matches_its_nets_before_it_is_timed(backend):
    """What a GPU population case checks and times, run here under the interpreter: triton-stack nets are
    built with stack=True, one launch of the depth-fused stack for a net's hidden layers, and one for all
    the trials' as a population."""
    from highway.bench.harness.population_sweep import PopulationCase, _steps

    one_by_one, as_population, error = _steps(PopulationCase("highway", 4, 16, "fp32", 5, backend, 3),
                                              torch.device("cpu"))
    assert error <= 1.0
    one_by_one()
    as_population()
    from highway.bench.harness.population_sweep import expand

    with pytest.raises(ValueError, match="unknown backend"):  # recomputation saves memory, not time
        expand(backend=["triton-stack-recompute"])


@pytest.mark.parametrize("axes,words", [
    (dict(population=[0]), "population must be positive"),
    (dict(backend=["gemm-only"]), "unknown backend"),
    (dict(backend=["compile-layers-cudagraphs"]), "unknown backend"),  # a way to time a bare stack, not a net
    (dict(model=["highway"], depth=[1]), "depth >= 2"),
])
def test_a_bad_population_axis_is_refused_before_anything_runs(tmp_path, axes, words):
    from highway.bench.harness.population_sweep import population_sweep

    with pytest.raises(ValueError, match=words):
        population_sweep(tmp_path, progress=False, device="cpu", **{**POPULATION_TINY, **axes})
    assert not (tmp_path / "population.csv").exists()


def test_ctrl_c_in_a_population_sweep_keeps_finished_rows_and_leaves_nothing_claimed(tmp_path, monkeypatch):
    import highway.bench.harness.population_sweep as ps

    real, calls = ps.run_population_case, []

    def interrupt_second(case, *a, **k):
        calls.append(case)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(case, *a, **k)

    tiny = {**POPULATION_TINY, "backend": ["torch"]}
    monkeypatch.setattr(ps, "run_population_case", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        ps.population_sweep(tmp_path, progress=False, device="cpu", **tiny)
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert len(pd.read_csv(tmp_path / "population.csv")) == 1
    calls.clear()
    monkeypatch.setattr(ps, "run_population_case", lambda case, *a, **k: calls.append(case) or real(case, *a, **k))
    assert len(ps.population_sweep(tmp_path, progress=False, device="cpu", **tiny)) == 4 and len(calls) == 3


def test_population_command(tmp_path, capsys):
    assert main(["population", "--model", "highway", "--depth", "3", "--width", "8", "--batch", "4",
                 "--population", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "one by one against one population" in out and "population.csv" in out
