"""Sweeps and searches on Ray: a local Ray instance with 2 CPUs gives the rows the local executor gives, the
driver alone writes them (none doubled), a re-run adds nothing, and a worker killed mid-unit loses nothing."""
import os
import uuid

import pytest

from highway.bench.harness.executors import LocalExecutor, RayExecutor, make_executor
from highway.bench.harness.sweep import expand, throughput_sweep
from highway.bench.schema import THROUGHPUT_KEYS



SWEEP = dict(model=["highway", "plain"], layer=["dense"], depth=[1, 3], width=[8], dtype=["fp32"], batch=[4],
             backend=["torch"], mode=["fwd", "train"])
CONFIGS = len(expand(**SWEEP))  # 8


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    executor = RayExecutor(num_cpus=2)
    yield executor
    ray.shutdown()


def keys(df):
    return sorted(tuple(r) for r in df[THROUGHPUT_KEYS].itertuples(index=False))


def test_a_ray_sweep_gives_the_local_rows_once_and_a_rerun_adds_nothing(tmp_path, ray_executor, capsys):
    local = throughput_sweep(tmp_path / "local", progress=False, device="cpu", **SWEEP)
    on_ray = throughput_sweep(tmp_path / "ray", progress=False, executor=ray_executor, **SWEEP)
    assert keys(on_ray) == keys(local) and len(on_ray) == CONFIGS and (on_ray["status"] == "ok").all()
    assert on_ray["host"].notna().all() and on_ray["device"].str.startswith("CPU").all()
    again = throughput_sweep(tmp_path / "ray", progress=False, executor=ray_executor, **SWEEP)
    assert len(again) == CONFIGS and f"{CONFIGS} of {CONFIGS} configurations already done" in capsys.readouterr().out
    # a re-run on the other executor resumes too
    assert len(throughput_sweep(tmp_path / "ray", progress=False, device="cpu", **SWEEP)) == CONFIGS


def test_a_ray_search_gives_the_local_rows(tmp_path, ray_executor):
    import highway.bench.study.convergence as cv

    study = cv.Study(name="r", dataset="digits", depths=(3,), trials=3, epochs=1, batch=64, max_train=200,
                     population=2, search=cv.SearchSpace(fixed={"activation": "relu"}))
    local = cv.convergence_study(tmp_path / "local", study, progress=False)
    on_ray = cv.convergence_study(tmp_path / "ray", study, progress=False, executor=ray_executor)
    cols = ["model", "gate_rule", "depth", "trial", "epoch"]
    assert sorted(map(tuple, on_ray[cols].to_numpy())) == sorted(map(tuple, local[cols].to_numpy()))
    assert not on_ray.duplicated(cols).any() and on_ray["host"].notna().all()
    assert sorted(p.name for p in (tmp_path / "ray" / "checkpoints").glob("*.pt")) == \
        sorted(p.name for p in (tmp_path / "local" / "checkpoints").glob("*.pt"))
    assert len(cv.convergence_study(tmp_path / "ray", study, progress=False, executor=ray_executor)) == len(on_ray)


def die_once(marker_dir):
    """A unit wrapper whose first call of each unit kills its worker process, as a crash or OOM kill would."""
    def wrap(fn):
        def unit(payload):
            marker = os.path.join(marker_dir, uuid.uuid5(uuid.NAMESPACE_OID, repr(payload[0])).hex)
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return fn(payload)
        return unit
    return wrap


def test_a_worker_killed_mid_unit_loses_no_configuration(tmp_path, ray_executor):
    markers = tmp_path / "markers"
    markers.mkdir()
    dying = RayExecutor(unit_wrapper=die_once(str(markers)))  # joins the running local instance
    df = throughput_sweep(tmp_path / "out", progress=False, executor=dying, **SWEEP)
    assert len(df) == CONFIGS and (df["status"] == "ok").all() and not df.duplicated(THROUGHPUT_KEYS).any()
    assert len(os.listdir(markers)) == CONFIGS  # every unit's worker died once, and its retry ran


def test_executor_choice_errors_are_clear():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("slurm")
    with pytest.raises(ValueError, match="--address is for --executor ray"):
        make_executor("local", "auto")


def always_die(fn):
    def unit(payload):
        os._exit(1)
    return unit


def test_a_unit_whose_worker_dies_twice_becomes_a_status_row(tmp_path, ray_executor):
    dying = RayExecutor(unit_wrapper=always_die)
    one = {**SWEEP, "model": ["highway"], "depth": [1], "mode": ["fwd"]}
    (row,) = throughput_sweep(tmp_path, progress=False, executor=dying, **one).to_dict("records")
    assert row["status"].startswith("error: its worker failed twice")
    # a status row is a result: a re-run does not retry it, as for any configuration that failed
    assert len(throughput_sweep(tmp_path, progress=False, executor=ray_executor, **one)) == 1


def test_executor_ray_without_ray_names_the_install_command(monkeypatch, capsys, tmp_path):
    import sys

    from highway.bench.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert main(["throughput", "--preset", "quick", "--executor", "ray", "--out", str(tmp_path)]) == 2
    assert "pip install 'highway-triton[distributed]'" in capsys.readouterr().err


def test_ctrl_c_cancels_what_is_outstanding_and_loses_only_the_units_in_flight(tmp_path, ray_executor, monkeypatch):
    import sqlite3

    from highway.bench.harness.store import ResultStore

    append = ResultStore.append
    calls = []

    def interrupted(self, row, **kwargs):
        calls.append(row)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the driver writes the second row
        return append(self, row, **kwargs)

    monkeypatch.setattr(ResultStore, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        throughput_sweep(tmp_path, progress=False, executor=ray_executor, **SWEEP)
    monkeypatch.setattr(ResultStore, "append", append)
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # nothing left claimed
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    df = throughput_sweep(tmp_path, progress=False, executor=ray_executor, **SWEEP)
    assert len(df) == CONFIGS and not df.duplicated(THROUGHPUT_KEYS).any()
