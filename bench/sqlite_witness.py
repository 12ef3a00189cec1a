#!/usr/bin/env python3
"""What this disk permits SQLite at a fixed rate, beside `write_http.sh`'s own
fixed-rate run (issue 11: p99 at half rate).

    python3 bench/sqlite_witness.py DIR RATE SECONDS [LATENCIES]

Appends, open loop, RATE rows a second for SECONDS into a fresh SQLite database in
DIR (WAL, synchronous=FULL, as the service runs), each row the shape pgbench writes
on PostgreSQL in `write_http.sh` (a fact with a random UUID key and a subject
index, and an audit event keyed by (business, seq)). Group commit, as the service
does it: one thread takes every row that is due and commits them in one
transaction; a row's latency runs from when it was due to when its commit
returned (no coordinated omission). The WAL is checkpointed PASSIVE every 250 ms
from a second connection, off the committing thread, as the service does.

Prints `RESULT sent=.. rate=.. p50_ms=.. p99_ms=.. max_ms=.. commits=..`; with
LATENCIES, also writes every row's latency there (ms, one a line).
"""

import os
import sqlite3
import sys
import threading
import time
import uuid


def main() -> None:
    directory, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    dump = sys.argv[4] if len(sys.argv) > 4 else None
    path = os.path.join(directory, "witness.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.executescript(
        """
        CREATE TABLE facts (
          id TEXT PRIMARY KEY, business_id TEXT NOT NULL, subject_id TEXT NOT NULL,
          kind TEXT NOT NULL, categories TEXT, channel TEXT, evidence BLOB,
          effective_at TIMESTAMP NOT NULL, recorded_at TIMESTAMP NOT NULL);
        CREATE INDEX facts_by_subject ON facts (subject_id, recorded_at);
        CREATE TABLE events (
          business_id TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL,
          at TIMESTAMP NOT NULL, type TEXT NOT NULL, actor TEXT NOT NULL,
          subject_id TEXT, data TEXT NOT NULL, prev_hash BLOB NOT NULL,
          hash BLOB NOT NULL, PRIMARY KEY (business_id, seq));
        """
    )
    done = threading.Event()

    def checkpoints() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        while not done.wait(0.25):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    checkpointer = threading.Thread(target=checkpoints)
    checkpointer.start()

    total = int(rate * seconds)
    latencies = []
    commits = 0
    seq = 0
    start = time.monotonic()
    sent = 0
    while sent < total:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        if due <= sent:
            time.sleep(max(0.0, start + sent / rate - now))
            continue
        at = time.strftime("%Y-%m-%d %H:%M:%S")
        facts, events = [], []
        for _ in range(sent, due):
            seq += 1
            subject = str(uuid.uuid4())
            facts.append((str(uuid.uuid4()), "bench", subject, "opt_in", '["utility"]', "web",
                          os.urandom(128), at, at))
            events.append(("bench", seq, str(uuid.uuid4()), at, "opt_in.recorded", "key:bench",
                           subject, "x" * 400, os.urandom(32), os.urandom(32)))
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO facts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", facts)
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", events)
        db.execute("COMMIT")
        commits += 1
        end = time.monotonic()
        latencies.extend(end - (start + i / rate) for i in range(sent, due))
        sent = due
    elapsed = time.monotonic() - start
    done.set()
    checkpointer.join()
    latencies.sort()
    if dump:
        with open(dump, "w") as out:
            out.writelines(f"{latency * 1000.0:.3f}\n" for latency in latencies)

    def pct(p: float) -> float:
        return latencies[int((len(latencies) - 1) * p)] * 1000.0

    print(
        f"RESULT sent={len(latencies)} rate={len(latencies) / elapsed:.0f} "
        f"p50_ms={pct(0.5):.2f} p99_ms={pct(0.99):.2f} max_ms={pct(1.0):.2f} commits={commits}"
    )


if __name__ == "__main__":
    main()
