"""A test ledger: the outcome of each test of a run, one line a test as it ends, so that a run a short GPU lease
cuts off goes on where it stopped (`highway-bench campaign`'s test steps; tests/conftest.py writes it and
leaves out the tests it names). Its first line names the commit the outcomes speak for.

    # commit 1928c8d0a1b2
    passed tests/test_highway_stack.py::test_stack_matches_the_reference[1-16-relu-torch.float32]
"""
from collections import Counter
from pathlib import Path

OUTCOMES = ("passed", "failed", "error", "skipped")  # in the order a summary gives them


def start(path, commit: str) -> None:
    """A new ledger at `path`, for the outcomes of `commit`."""
    Path(path).write_text(f"# commit {commit}\n")


def record(path, outcome: str, nodeid: str) -> None:
    with open(path, "a") as f:
        f.write(f"{outcome} {nodeid}\n")


def read(path) -> tuple[str | None, dict]:
    """(the commit it speaks for, or None; nodeid → outcome of every test it names); (None, {}) without one."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return None, {}
    commit = lines[0].removeprefix("# commit ") if lines and lines[0].startswith("# commit ") else None
    outcomes = dict(reversed(line.split(" ", 1)) for line in lines if " " in line and not line.startswith("#"))
    return commit, outcomes


def summary(path) -> str:
    """"12 passed, 1 failed, 85 skipped": the outcomes a ledger holds, over every run that wrote it."""
    counts = Counter(read(path)[1].values())
    return ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
