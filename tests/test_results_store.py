"""The results store under the failures users met: cut rows, a second header, two sweeps into one
directory, a foreign file, and the cost of appending."""
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import highway.bench.harness.sweep as sweep_module
from highway.bench.cli import main
from highway.bench.harness.store import ResultStore
from highway.bench.schema import CONVERGE_COLUMNS, CONVERGE_KEYS, STORE_FILE, THROUGHPUT_KEYS

TINY = dict(model=["highway"], layer=["dense"], depth=[1, 2], width=[8], dtype=["fp32"], batch=[4],
            backend=["torch"], mode=["fwd", "fwd+bwd"])


def sweep(out, **overrides):
    return sweep_module.throughput_sweep(out, progress=False, device="cpu", **{**TINY, **overrides})


def count_runs(monkeypatch) -> list:
    calls = []
    real = sweep_module.run_case
    monkeypatch.setattr(sweep_module, "run_case", lambda case, *a, **k: calls.append(case) or real(case, *a, **k))
    return calls


def as_older_version(directory):
    """The directory as an earlier version left it: the CSV alone, no store."""
    for f in directory.glob(STORE_FILE + "*"):
        f.unlink()


def test_a_row_cut_inside_a_value_is_measured_again(tmp_path, monkeypatch):
    sweep(tmp_path)
    as_older_version(tmp_path)
    path = tmp_path / "results.csv"
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    cut = last[: last.index(",ok,") + 6]  # the row stops inside its first timing, as a full disk leaves it
    path.write_text(text[: len(text) - len(last) - 1] + cut)
    calls = count_runs(monkeypatch)
    df = sweep(tmp_path)
    assert len(calls) == 1 and len(df) == 4  # the cut row, and only it, ran again
    on_disk = pd.read_csv(path)  # the export is whole again
    assert len(on_disk) == 4 and on_disk["median_ms"].notna().all()


def test_a_cut_row_with_the_next_appended_to_it_is_one_damaged_line(tmp_path, monkeypatch, capsys):
    sweep(tmp_path)
    as_older_version(tmp_path)
    path = tmp_path / "results.csv"
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, rows[0], rows[1][:40] + rows[2], rows[3]]) + "\n")  # a 59-field line
    calls = count_runs(monkeypatch)
    df = sweep(tmp_path)
    assert len(calls) == 2 and len(df) == 4
    assert "damaged" in capsys.readouterr().err


def test_a_second_header_costs_one_line_not_a_rerun_of_everything(tmp_path, monkeypatch):
    sweep(tmp_path)
    as_older_version(tmp_path)
    path = tmp_path / "results.csv"
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, rows[0], rows[1], header, rows[2], rows[3]]) + "\n")
    calls = count_runs(monkeypatch)
    sweep(tmp_path)
    assert calls == []
    assert pd.read_csv(path)["depth"].dtype.kind == "i"  # no header row left among the numbers


def test_appending_a_row_does_not_read_the_store_back(tmp_path, monkeypatch):
    reads = []
    real = ResultStore.read
    monkeypatch.setattr(ResultStore, "read", lambda self: reads.append(1) or real(self))
    sweep(tmp_path / "short", depth=[1])  # 2 rows
    short = len(reads)
    reads.clear()
    sweep(tmp_path / "long", depth=[1, 2, 3, 4])  # 8 rows
    assert len(reads) == short <= 3  # exports and the returned frame: a few reads, however many rows


def test_two_sweeps_into_one_directory_share_the_work(tmp_path):
    script = textwrap.dedent("""
        import sys
        import highway.bench.harness.sweep as s
        real, ran = s.run_case, []
        def counted(case, *a, **k):
            ran.append(case)
            return real(case, *a, **k)
        s.run_case = counted
        s.throughput_sweep(sys.argv[1], progress=False, device="cpu", model=["highway"], layer=["dense"],
                           depth=[1, 2, 3], width=[8], dtype=["fp32"], batch=[4], backend=["torch"],
                           mode=["fwd", "fwd+bwd", "train"])
        print("RAN", len(ran))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    ran = [int(out.split("RAN")[1]) for out, _ in outputs]
    assert sum(ran) == 9  # each of the 9 configurations timed once, by one of the two
    assert len(pd.read_csv(tmp_path / "results.csv")) == 9


def test_a_claim_held_by_a_dead_process_is_taken_over(tmp_path):
    with ResultStore(tmp_path, "results.csv", ["model", "depth"], ["model", "depth"]) as store:
        store._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?)",
                          (store.table, '["highway", 1]', f"{store.owner.rpartition(':')[0]}:999999999", 0.0))
        assert store.claim(("highway", 1))  # pid 999999999 does not exist
        other = ResultStore(tmp_path, "results.csv", ["model", "depth"], ["model", "depth"])
        other.owner = "somewhere-else:1"  # a live claim from another host is respected
        assert other.claim(("plain", 1)) and not store.claim(("plain", 1))
        other.close()


@pytest.mark.parametrize("name,columns", [("results.csv", "a,b\n1,2\n"), ("converge.csv", "x\n1\n")])
def test_a_foreign_results_file_is_an_error_line(tmp_path, capsys, name, columns):
    (tmp_path / name).write_text(columns)
    command = (["throughput", "--depth", "1", "--width", "8", "--batch", "4"] if name == "results.csv" else
               ["converge", "--dataset", "digits", "--depth", "3", "--trials", "1", "--epochs", "1"])
    assert main([*command, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and name in err and "written by highway-bench" in err
    assert not (tmp_path / STORE_FILE).exists()  # refused before anything was made


def test_an_older_converge_csv_resumes(tmp_path):
    row = dict(study="s", dataset="digits", model="plain", gate_rule="none", depth=3, trial=0, epoch=1,
               train_loss=0.5, status="ok")
    old_columns = [c for c in CONVERGE_COLUMNS if c != "num_classes"]  # written before the column existed
    pd.DataFrame([row], columns=old_columns).to_csv(tmp_path / "converge.csv", index=False)
    with ResultStore(tmp_path, "converge.csv", CONVERGE_COLUMNS, CONVERGE_KEYS) as store:
        assert store.has(tuple(row[k] for k in CONVERGE_KEYS))
        assert store.read()["gate_rule"].tolist() == ["none"]  # text stays text


def test_resume_says_what_is_done_and_records_no_empty_run(tmp_path, capsys):
    sweep(tmp_path)
    runs = (tmp_path / "runs.jsonl").read_text().count("\n")
    capsys.readouterr()
    sweep(tmp_path)
    assert "4 of 4 configurations already done" in capsys.readouterr().out
    assert (tmp_path / "runs.jsonl").read_text().count("\n") == runs


def test_store_keys_are_the_schema_keys(tmp_path):
    sweep(tmp_path)
    with ResultStore(tmp_path, "results.csv", list(pd.read_csv(tmp_path / "results.csv").columns),
                     THROUGHPUT_KEYS) as store:
        assert len(store.done_keys()) == 4


def test_a_store_from_an_older_version_gains_its_new_columns_and_keys_without_losing_a_row(tmp_path, monkeypatch):
    """A newer version may add a column, or a key column: the old rows stay, and rows that differ only in the
    new key column no longer replace each other (under the old UNIQUE key they silently did)."""
    with ResultStore(tmp_path, "results.csv", ["model", "depth", "ms"], ["model", "depth"]) as old:
        old.append(dict(model="highway", depth=1, ms=1.0))
        old.append(dict(model="highway", depth=2, ms=2.0))
    columns, keys = ["model", "depth", "dtype", "ms", "note"], ["model", "depth", "dtype"]
    with ResultStore(tmp_path, "results.csv", columns, keys) as new:
        before = new.read()
        assert before["ms"].tolist() == [1.0, 2.0] and before["dtype"].isna().all() and before["note"].isna().all()
        new.append(dict(model="highway", depth=1, dtype="fp16", ms=3.0))
        new.append(dict(model="highway", depth=1, dtype="bf16", ms=4.0))
        new.append(dict(model="highway", depth=1, dtype="bf16", ms=5.0))  # the same key: replaced, as always
        assert new.read()["ms"].tolist() == [1.0, 2.0, 3.0, 5.0]
    rebuilt = []
    monkeypatch.setattr(ResultStore, "_rekey", lambda self: rebuilt.append(self.table))
    with ResultStore(tmp_path, "results.csv", columns, keys) as again:  # its key is the schema's now
        assert len(again.read()) == 4
    with ResultStore(tmp_path / "fresh", "results.csv", columns, keys):
        pass
    assert rebuilt == []


@pytest.mark.parametrize("line,why", [
    ("highway,2.5,1.0,True\n", "depth '2.5' is not a whole number"),
    ("highway,2,fast,True\n", "ms 'fast' is not a number"),
    ("highway,2,1.0,maybe\n", "noisy 'maybe' is not True or False"),
    (",2,1.0,True\n", "a key column is empty"),
    ("highway,2,1.0\n", "3 fields, expected 4"),
    ("highway,2,1.0,True", "cut short (no end of line)"),
])
def test_each_kind_of_damaged_line_is_named_and_left_out_and_the_others_are_read(tmp_path, line, why):
    from highway.bench.schema import read_csv_rows

    path = tmp_path / "results.csv"
    path.write_text("model,depth,ms,noisy\nhighway,1,0.5,False\n\n" + line)  # a blank line is no damage
    rows, damaged = read_csv_rows(path, ["model", "depth", "ms", "noisy"], ["model", "depth"],
                                  {"depth": int, "ms": float, "noisy": bool})
    assert rows == [dict(model="highway", depth=1, ms=0.5, noisy=False)]
    assert damaged == [f"line 4: {why}"]
