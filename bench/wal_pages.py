#!/usr/bin/env python3
"""Pages per commit in a copy of a SQLite WAL, by b-tree (bench/write_pages.sh).

    python3 bench/wal_pages.py DATABASE WAL_COPY

Reads the WAL's frames since it last restarted (the frames whose salts match its
header), splits them into commits (a commit frame carries the database size),
and names each page's b-tree (table or index) from `dbstat` on a copy of the
database with that WAL. A page the database no longer holds (freed since) counts
as `free`. Prints, for each b-tree, the distinct pages a commit wrote of it on
average, and the bytes per commit (page images and frame headers).
"""

import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def main() -> None:
    database, wal = sys.argv[1], sys.argv[2]
    data = open(wal, "rb").read()
    _magic, _version, page_size, _seq, salt1, salt2 = struct.unpack(">6I", data[:24])
    commits, current = [], []
    offset = 32
    while offset + 24 + page_size <= len(data):
        page, size_after, s1, s2 = struct.unpack(">4I", data[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break
        current.append(page)
        if size_after:
            commits.append(current)
            current = []
        offset += 24 + page_size
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "copy.db")
        shutil.copy(database, copy)
        shutil.copy(wal, copy + "-wal")
        conn = sqlite3.connect(copy)
        names = dict(conn.execute("SELECT pageno, name FROM dbstat"))
        conn.close()
    if not commits:
        print("  no commits in this copy")
        return
    frames = sum(len(c) for c in commits)
    print(
        f"  page size {page_size}, {len(commits)} commits, {frames / len(commits):.1f} pages "
        f"({frames * (page_size + 24) / len(commits) / 1000:.1f} KB) per commit"
    )
    by_tree = collections.Counter()
    for commit in commits:
        for page in set(commit):
            by_tree[names.get(page, "free")] += 1
    for name, count in by_tree.most_common():
        print(f"    {name:44s} {count / len(commits):6.2f} pages/commit")


if __name__ == "__main__":
    main()
