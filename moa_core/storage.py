"""The DuckDB warehouse: tables written in transactions, a read-only snapshot for readers.

DuckDB allows one writer process per file, and a reader blocks writers. The pipeline
is the only writer (:class:`Warehouse`); readers such as the dashboard open the
published snapshot (:meth:`Warehouse.publish_snapshot`), a consistent copy written to a
temporary name and renamed into place.

Two kinds of tables:

- fixed-schema tables shared by partitions (e.g. ``evaluation_results``): a partition
  is replaced by ``DELETE ... WHERE <keys>`` + ``INSERT`` inside one transaction
  (:meth:`Warehouse.replace_rows`);
- wide feature tables whose columns depend on the dataset (CP profiles, embeddings):
  one table per partition, ``<base>__<key>__<key>`` (:func:`partition_table`), replaced
  with ``CREATE OR REPLACE TABLE`` in a transaction (:meth:`Warehouse.replace_table`).

Every write is registered in ``catalog`` (table, partition keys, rows, columns, time, code version).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd

from moa_core.atomic import atomic_directory, write_json_atomic, write_parquet_atomic  # noqa: F401 (re-exported)
from moa_core.errors import SchemaError

_SAFE = re.compile(r"[^0-9A-Za-z_]+")


def _duckdb_config() -> dict:
    """DuckDB's memory limit for the warehouse (``$MOA_DUCKDB_MEMORY_LIMIT``, default 8GB): joins and sorts of
    a JUMP-scale release spill to disk beyond it instead of taking the machine's memory."""
    return {"memory_limit": os.environ.get("MOA_DUCKDB_MEMORY_LIMIT", "8GB")}


def partition_table(base: str, *keys: str) -> str:
    """Table name for one partition, e.g. ``cp_profiles__synthetic_cpjump1``."""
    parts = [base, *(_SAFE.sub("_", k) for k in keys)]
    return "__".join(parts)


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][0-9A-Za-z_]*", name):
        raise ValueError(f"unsafe table name {name!r}")
    return f'"{name}"'


def quoted_identifier(name: str) -> str:
    """``"name"`` for a table name made of letters, digits and underscores; anything else is refused
    (identifiers cannot be bound as SQL parameters, so they are validated instead)."""
    return _ident(name)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` on ``con``; ``COMMIT`` when the block ends, ``ROLLBACK`` (and re-raise) when it raises, so a
    failed write leaves nothing half-written."""
    con.begin()
    try:
        yield con
        con.commit()
    except BaseException:
        con.rollback()
        raise


class Warehouse:
    """A DuckDB file the pipeline writes (one writer; retries while another holds the lock)."""

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, lock_timeout_s: float = 120.0):
        self.path = Path(path)
        self.read_only = read_only
        self.lock_timeout_s = lock_timeout_s

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.read_only and not self.path.is_file():
            raise FileNotFoundError(f"warehouse not found: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only, config=_duckdb_config())
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            yield con
        finally:
            con.close()

    # ---- writes -------------------------------------------------------------------
    def register_write(
        self, con: duckdb.DuckDBPyConnection, table: str, partition: dict, n_rows: int, n_columns: int
    ) -> None:
        """Record a write of ``table`` in ``catalog`` inside the caller's transaction (for writers that
        build a table in SQL, e.g. out of core, rather than from one DataFrame)."""
        from moa_core.provenance import code_version

        con.execute(
            "CREATE TABLE IF NOT EXISTS catalog (table_name VARCHAR, partition_key VARCHAR, n_rows BIGINT, "
            "n_columns INTEGER, written_at TIMESTAMP, code_version VARCHAR)"
        )
        con.execute("ALTER TABLE catalog ADD COLUMN IF NOT EXISTS code_version VARCHAR")  # warehouses before it
        key = "/".join(f"{k}={v}" for k, v in sorted(partition.items()))
        con.execute("DELETE FROM catalog WHERE table_name = ? AND partition_key = ?", [table, key])
        con.execute(
            "INSERT INTO catalog (table_name, partition_key, n_rows, n_columns, written_at, code_version) "
            "VALUES (?, ?, ?, ?, now(), ?)",
            [table, key, int(n_rows), int(n_columns), code_version()],
        )

    def _register_catalog(self, con: duckdb.DuckDBPyConnection, table: str, partition: dict, df: pd.DataFrame) -> None:
        self.register_write(con, table, partition, len(df), len(df.columns))

    def replace_table(self, table: str, df: pd.DataFrame, *, partition: dict | None = None) -> None:
        """Create or replace ``table`` with ``df`` in one transaction."""
        if df.empty:
            raise SchemaError(f"refusing to write an empty table {table}")
        with self.connect() as con, transaction(con):
            con.register("_incoming", df)
            con.execute(f"CREATE OR REPLACE TABLE {_ident(table)} AS SELECT * FROM _incoming")
            con.unregister("_incoming")
            self._register_catalog(con, table, partition or {}, df)

    def drop_table(self, table: str) -> bool:
        """Drop ``table`` and its ``catalog`` rows in one transaction (e.g. a method a dataset can no longer
        have, so no stale table of it is scored); False when there was none."""
        if not self.has_table(table):
            return False
        with self.connect() as con, transaction(con):
            con.execute(f"DROP TABLE {_ident(table)}")
            con.execute("DELETE FROM catalog WHERE table_name = ?", [table])
        return True

    def replace_rows(
        self, table: str, df: pd.DataFrame, where: dict[str, object], *, allow_empty: bool = False
    ) -> None:
        """Replace the rows of ``table`` matching ``where`` by ``df`` (one transaction).

        ``df`` must carry the ``where`` columns with those values. Creates the table on
        first write; afterwards the columns must match (schema drift is an error). An
        empty ``df`` is refused unless ``allow_empty`` (e.g. "no flagged fields"), which
        then just clears the partition.
        """
        self.replace_partitions({table: df}, where, allow_empty=allow_empty)

    def replace_partitions(
        self, tables: dict[str, pd.DataFrame], where: dict[str, object], *, allow_empty: bool = False
    ) -> None:
        """:meth:`replace_rows` of several tables in one transaction: all are replaced, or none."""
        for table, df in tables.items():
            if df.empty and not allow_empty:
                raise SchemaError(f"refusing to write an empty partition {where} of {table}")
            for k, v in where.items():
                if k not in df.columns or not (df[k] == v).all():
                    raise SchemaError(f"{table}: every row must have {k} == {v!r}")
        with self.connect() as con, transaction(con):
            for table, df in tables.items():
                self._replace_rows(con, table, df, where)

    def _replace_rows(self, con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, where: dict) -> None:
        con.register("_incoming", df)
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[
            0
        ]
        if not exists:
            con.execute(f"CREATE TABLE {_ident(table)} AS SELECT * FROM _incoming LIMIT 0")
        cols = [r[0] for r in con.execute(f"DESCRIBE {_ident(table)}").fetchall()]
        if list(cols) != list(df.columns):
            raise SchemaError(f"{table}: schema drift; table has columns {cols}, new rows have {list(df.columns)}")
        cond = " AND ".join(f"{_ident(k)} = ?" for k in where)
        con.execute(f"DELETE FROM {_ident(table)} WHERE {cond}", list(where.values()))
        con.execute(f"INSERT INTO {_ident(table)} SELECT * FROM _incoming")
        con.unregister("_incoming")
        self._register_catalog(con, table, where, df)

    # ---- reads --------------------------------------------------------------------
    def read(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def read_table(self, table: str, where: dict[str, object] | None = None) -> pd.DataFrame:
        if not self.has_table(table):
            raise KeyError(f"table {table} not found in {self.path}; materialize its asset first")
        sql = f"SELECT * FROM {_ident(table)}"
        params: list = []
        if where:
            sql += " WHERE " + " AND ".join(f"{_ident(k)} = ?" for k in where)
            params = list(where.values())
        return self.read(sql, params)

    #: Column types :meth:`append_columns` may add.
    _COLUMN_TYPES = {"VARCHAR", "BOOLEAN", "BIGINT", "DOUBLE"}

    def append_columns(self, table: str, columns: dict[str, tuple[str, object]]) -> list[str]:
        """Add the ``columns`` (name -> (type, default)) that an existing ``table`` lacks, at its end.

        The migration of a table written by an older version (e.g. ``field_qc`` before its ``channel``
        and ``skipped`` columns); one transaction; returns the columns added (none if the table is absent).
        """
        if not self.has_table(table):
            return []
        added = []
        with self.connect() as con, transaction(con):
            have = {r[0] for r in con.execute(f"DESCRIBE {_ident(table)}").fetchall()}
            for name, (typ, default) in columns.items():
                if name in have:
                    continue
                if typ not in self._COLUMN_TYPES:
                    raise SchemaError(f"{table}: cannot add a column of type {typ!r}")
                con.execute(f"ALTER TABLE {_ident(table)} ADD COLUMN {_ident(name)} {typ}")
                if default is not None:
                    con.execute(f"UPDATE {_ident(table)} SET {_ident(name)} = ?", [default])
                added.append(name)
        return added

    def has_table(self, table: str) -> bool:
        if not self.path.is_file():
            return False
        with self.connect() as con:
            return bool(
                con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[
                    0
                ]
            )

    def tables(self) -> list[str]:
        with self.connect() as con:
            return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]

    # ---- snapshot -----------------------------------------------------------------
    def publish_snapshot(self, dest: str | os.PathLike) -> Path:
        """Copy the whole warehouse to ``dest`` consistently (temp name, then rename)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        os.unlink(tmp)  # DuckDB must create the file itself
        try:
            # No path ever enters SQL (a folder named o'brien, or one carrying SQL, is just
            # a path): while this process holds the single-writer lock, CHECKPOINT folds the
            # WAL into the file, which is then copied byte for byte and renamed into place.
            with self.connect() as con:
                con.execute("CHECKPOINT")
                shutil.copyfile(self.path, tmp)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
            Path(tmp + ".wal").unlink(missing_ok=True)
        return dest
