"""A child process that reads a SQLite CRM through ADBC and hands back Arrow tables.

ADBC's driver carries its own copy of SQLite. Two copies of SQLite in one
process do not see each other's locks (POSIX locks belong to the process),
so when the driver's copy closes the file it believes itself the last user:
it checkpoints, deletes the write-ahead log and truncates the shared-memory
index that Python's sqlite3 still has mapped. The next write through
sqlite3 then dies of SIGBUS, and another application writing the CRM at
that moment could corrupt it ("How To Corrupt An SQLite Database File",
section 2.2.1). In its own process the driver is just one more reader that
SQLite coordinates with, as it does with any other program.

Only ``pyarrow`` and the driver are imported here: the child starts in a
fraction of a second.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection
from urllib.parse import quote


def serve(path: str, pipe: Connection) -> None:
    """Answer each SQL text received on ``pipe`` with ("ok", Arrow IPC stream bytes) or ("error", message), all in
    one read-only transaction, until ``None`` arrives or the parent goes away."""
    import adbc_driver_sqlite.dbapi as adbc
    import pyarrow as pa

    connection = adbc.connect(f"file:{quote(path)}?mode=ro")
    try:
        while True:
            try:
                sql = pipe.recv()
            except EOFError:
                return
            if sql is None:
                return
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    table = cursor.fetch_arrow_table()
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                pipe.send(("ok", None))
                pipe.send_bytes(sink.getvalue())
            except Exception as error:  # the parent falls back to the sqlite3 driver for this statement
                pipe.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.rollback()
        connection.close()


if __name__ == "__main__":
    serve(sys.argv[1], Connection(int(sys.argv[2])))
