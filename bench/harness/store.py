"""The results store: a SQLite database per results directory (`results.sqlite`), one table per kind of
row, each with a UNIQUE key, so that a row is written whole or not at all.

- Appending a row is one transaction, O(log n): Ctrl-C or a crash loses at most the unit in progress.
- Runs into one directory share the work: a unit (a sweep case, a training trial) is claimed in the
  database before it runs, so a second run skips what the first is running, and a claim whose process
  died is taken over.
- `results.csv` / `converge.csv` / `carry.csv` stay beside it as exports that pandas reads, rewritten
  whole through a temporary file and a rename, so that a reader never sees half a file.
- A directory written by an earlier version (CSV only), or a damaged CSV, is read row by row
  (`highway.bench.schema.read_csv_rows`): damaged rows are reported and left out, so they run again.
- A store written by an earlier version gains this version's columns (empty in its rows) and key, whole.

Every run's environment is appended to `runs.jsonl` beside it.
"""
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path

from highway.bench.schema import RUNS_FILE, STATUS_OK, STORE_FILE, TABLES, quote, read_csv_rows, table_name, \
    typed_frame

STALE_CLAIM_SECONDS = 24 * 3600  # a claim from another host is taken over after this long
EXPORT_EVERY_SECONDS = 10.0  # the CSV export is refreshed at most this often while rows are added


class ResultStore:
    def __init__(self, directory, filename: str, columns: list[str], key_columns: list[str]):
        self.dir = Path(directory)
        self.path = self.dir / filename  # the CSV export
        self.db_path = self.dir / STORE_FILE
        self.table = table_name(filename)
        self.columns = list(columns)
        self.key_columns = list(key_columns)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.types = TABLES[filename][2] if filename in TABLES else {}
        self.damaged: list[str] = []
        self._last_export = 0.0
        self._dirty = False
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"{self.dir} is a file, not a results directory")
        if not self.db_path.exists() and self.path.exists():
            read_csv_rows(self.path, self.columns, self.key_columns, self.types)  # a foreign file: no store made
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.db_path, timeout=120, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut
            self._create()
        except (sqlite3.OperationalError, PermissionError) as e:
            raise ValueError(f"cannot write results to {self.dir}: {e}") from None

    # --- schema and migration ---------------------------------------------------------------------------

    def _create(self):
        with self._transaction():
            cols = ", ".join(quote(c) for c in self.columns)
            keys = ", ".join(quote(c) for c in self.key_columns)
            self._db.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ({cols}, UNIQUE ({keys}))')
            present = {r[1] for r in self._db.execute(f'PRAGMA table_info("{self.table}")')}
            for column in self.columns:  # a column added by a newer version
                if column not in present:
                    self._db.execute(f'ALTER TABLE "{self.table}" ADD COLUMN {quote(column)}')
            if self._unique_key() != self.key_columns:
                self._rekey()
            self._db.execute("CREATE TABLE IF NOT EXISTS claims (tbl, unit, owner, since, UNIQUE (tbl, unit))")
            self._db.execute("CREATE TABLE IF NOT EXISTS imported (tbl UNIQUE)")
            imported = self._db.execute("SELECT 1 FROM imported WHERE tbl = ?", (self.table,)).fetchone()
            if not imported:
                self._import_csv()
                self._db.execute("INSERT INTO imported VALUES (?)", (self.table,))

    def _unique_key(self) -> list[str] | None:
        """The columns of the table's UNIQUE key, as the database holds it."""
        for _, index, unique, *_ in self._db.execute(f'PRAGMA index_list("{self.table}")').fetchall():
            if unique:
                return [r[2] for r in self._db.execute(f'PRAGMA index_info("{index}")')]
        return None

    def _rekey(self):
        """The table rebuilt with this version's key, its rows in their order. A key that gained a column
        must not keep the old one: rows that differ only in the new column would replace each other. (Where a
        key lost a column, rows it no longer tells apart collapse to the latest.)"""
        cols = ", ".join(quote(c) for c in self.columns)
        keys = ", ".join(quote(c) for c in self.key_columns)
        new = f"{self.table}__rekeyed"
        self._db.execute(f'DROP TABLE IF EXISTS "{new}"')
        self._db.execute(f'CREATE TABLE "{new}" ({cols}, UNIQUE ({keys}))')
        self._db.execute(f'INSERT OR REPLACE INTO "{new}" ({cols}) SELECT {cols} FROM "{self.table}" ORDER BY rowid')
        self._db.execute(f'DROP TABLE "{self.table}"')
        self._db.execute(f'ALTER TABLE "{new}" RENAME TO "{self.table}"')

    def _import_csv(self):
        """Rows of a CSV written before this store existed (or beside it by hand), once."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        rows, self.damaged = read_csv_rows(self.path, self.columns, self.key_columns, self.types)
        for row in rows:
            self._insert(row)
        if self.damaged:
            self._dirty = True  # the next export writes the CSV back without them
            print(f"{self.path}: {len(self.damaged)} damaged row(s) left out and to be run again: "
                  + "; ".join(self.damaged[:5]) + (" ..." if len(self.damaged) > 5 else ""), file=sys.stderr)

    def _transaction(self):
        return _Transaction(self._db)

    # --- rows -------------------------------------------------------------------------------------------

    def _insert(self, row: dict):
        values = [_sql_value(row.get(c)) for c in self.columns]
        marks = ", ".join("?" * len(self.columns))
        self._db.execute(f'INSERT OR REPLACE INTO "{self.table}" ({", ".join(map(quote, self.columns))}) '
                         f"VALUES ({marks})", values)

    def append(self, row: dict, unit=None):
        """Write `row` (replacing a row with its key), and release `unit`'s claim in the same transaction."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"columns {sorted(unknown)} are not in the {self.table} table")
        with self._transaction():
            self._insert(row)
            if unit is not None:
                self._db.execute("DELETE FROM claims WHERE tbl = ? AND unit = ?", (self.table, _unit(unit)))
        self._dirty = True
        if time.monotonic() - self._last_export > EXPORT_EVERY_SECONDS:
            self.export()

    def read(self):
        """Every row, oldest first, as a DataFrame; an empty one with the columns when there are none."""
        cursor = self._db.execute(f'SELECT {", ".join(map(quote, self.columns))} FROM "{self.table}" ORDER BY rowid')
        return typed_frame(cursor.fetchall(), self.columns, self.types)

    def rows_of(self, cases: list):
        """The rows of `cases` (each with `.key()`), oldest first, as a DataFrame."""
        keys = {c.key() for c in cases}
        df = self.read()
        return df[[tuple(r) in keys for r in df[self.key_columns].itertuples(index=False)]].reset_index(drop=True)

    def select(self, **where):
        """The rows whose columns equal `where` (an index lookup when they lead the key)."""
        clause = " AND ".join(f"{quote(c)} = ?" for c in where) or "1"
        cursor = self._db.execute(f'SELECT {", ".join(map(quote, self.columns))} FROM "{self.table}" '
                                  f"WHERE {clause} ORDER BY rowid", [_sql_value(v) for v in where.values()])
        return typed_frame(cursor.fetchall(), self.columns, self.types)

    def _settled(self, retry_failed: bool) -> str:
        """The SQL condition of a row that counts as done: any row, or with `retry_failed` only a row whose
        status is a result in itself ("ok", "unsupported: ..."), not a failure (an error, a mismatch against
        the reference, "oom") that a fix or a larger GPU may turn into a result."""
        return "1" if not retry_failed else f"(status = '{STATUS_OK}' OR status LIKE 'unsupported%')"

    def done_keys(self, retry_failed: bool = False) -> set:
        cursor = self._db.execute(f'SELECT {", ".join(map(quote, self.key_columns))} FROM "{self.table}" '
                                  f"WHERE {self._settled(retry_failed)}")
        return {tuple(values) for values in cursor}

    def pending(self, cases: list, overwrite: bool, noun: str, retry_failed: bool = False) -> list:
        """The `cases` (each with `.key()`) not yet in the store (all with `overwrite`; with `retry_failed`
        also those whose row is a failure); says how many are done."""
        done = set() if overwrite else self.done_keys(retry_failed)
        todo = [c for c in cases if c.key() not in done]
        if len(todo) < len(cases):
            print(f"{len(cases) - len(todo)} of {len(cases)} {noun} already done in {self.path.parent}"
                  + (f"; running the other {len(todo)}" if todo else ""))
        return todo

    def has(self, key: tuple, retry_failed: bool = False) -> bool:
        clause = " AND ".join(f"{quote(c)} = ?" for c in self.key_columns)
        return self._db.execute(f'SELECT 1 FROM "{self.table}" WHERE {clause} AND {self._settled(retry_failed)}',
                                list(key)).fetchone() is not None

    # --- sharing work between runs --------------------------------------------------------------------

    def claim(self, unit) -> bool:
        """True when this process may run `unit` (any tuple naming a piece of work): nobody else holds it,
        or its holder's process is gone. The claim ends with `append(..., unit=unit)` or `release(unit)`."""
        name = _unit(unit)
        with self._transaction():
            held = self._db.execute("SELECT owner, since FROM claims WHERE tbl = ? AND unit = ?",
                                    (self.table, name)).fetchone()
            if held and held[0] != self.owner and _alive(*held):
                return False
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                             (self.table, name, self.owner, time.time()))
        return True

    def release(self, unit):
        with self._transaction():
            self._db.execute("DELETE FROM claims WHERE tbl = ? AND unit = ? AND owner = ?",
                             (self.table, _unit(unit), self.owner))

    # --- files beside the store -----------------------------------------------------------------------

    def export(self):
        """Rewrite the CSV export from the store: a temporary file, fsynced, renamed over the old one."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", newline="") as f:
                self.read().to_csv(f, index=False, lineterminator="\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._last_export = time.monotonic()
        self._dirty = False

    def close(self):
        """Export what changed and close the database."""
        if self._dirty:
            self.export()
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def record_run(self, env: dict):
        with open(self.dir / RUNS_FILE, "a") as f:
            f.write(json.dumps(env) + "\n")


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT: the write lock is taken at the start, so two runs never interleave."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _unit(unit) -> str:
    return json.dumps([_sql_value(v) for v in unit])


def _sql_value(value):
    """Python and numpy scalars as SQLite takes them (NaN becomes NULL, which pandas reads back as NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _alive(owner: str, since: float) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return time.time() - since < STALE_CLAIM_SECONDS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
