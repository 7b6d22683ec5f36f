"""Many processes opening one new SQLite file at once (serve next to workers) must all get in."""

from __future__ import annotations

import threading

from sqlalchemy import text

from slimformer.store.db import make_engine


def test_simultaneous_first_connections_to_a_new_file_all_succeed(tmp_path):
    # Before the fix, about 1 in 50 of these connections failed with "database is locked": the
    # switch to WAL needs an exclusive lock and SQLite refuses it at once, without waiting.
    failures: list[str] = []
    for round_ in range(100):
        path = tmp_path / f"r{round_}.db"
        start = threading.Barrier(4)

        def connect_and_write(path=path, start=start) -> None:
            engine = make_engine(f"sqlite:///{path}")
            start.wait()
            try:
                with engine.begin() as conn:
                    conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
                    conn.execute(text("INSERT INTO t VALUES (1)"))
            except Exception as exc:  # noqa: BLE001 - every failure is what this test counts
                failures.append(str(exc).splitlines()[0])
            finally:
                engine.dispose()

        threads = [threading.Thread(target=connect_and_write) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        engine = make_engine(f"sqlite:///{path}")
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 4 - len(failures)
        engine.dispose()
        assert failures == [], f"round {round_}: {failures}"
