"""How soon a change written by one process reaches a watcher in another.

Several writer processes create objects into one store at once, each noting when every
create returned (committed); a watcher in this process notes when each event arrives. The
delay is arrival minus commit, on one machine's clock. It measures the store's notification
path (SQLite: the watcher polls the change log; MongoDB: it steps through the revision log),
not throughput. Baseline: the poll interval, since a watcher that looked just before a commit
sees it one interval later.

    python -m bench.watch_latency [--backend sqlite|mongodb] [--writers 3] [--n 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import pymongo

from swarmapply.api.store import open_store

WRITER = """
import json, sys, time
from swarmapply.api.store import open_store
store = open_store(sys.argv[1])
committed = {}
for i in range(int(sys.argv[3])):
    name = f"{sys.argv[2]}-{i}"
    store.create({"apiVersion": "swarmapply.io/v1", "kind": "Job",
                  "metadata": {"name": name}, "spec": {}})
    committed[name] = time.time()
    time.sleep(0.005)
print(json.dumps(committed))
"""


def measure(url: str, writers: int, per_writer: int) -> list[float]:
    """Delays in milliseconds, one per write."""
    store = open_store(url)
    start = store.revision()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"w{i}", str(per_writer)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    arrived: dict[str, float] = {}
    for event in store.watch("Job", start, timeout=300):
        arrived[event.object["metadata"]["name"]] = time.time()
        if len(arrived) == writers * per_writer:
            break
    committed: dict[str, float] = {}
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"a writer failed with exit code {proc.returncode}")
        committed.update(json.loads(out))
    store.close()
    missing = set(committed) - set(arrived)
    if missing:
        raise RuntimeError(f"{len(missing)} writes never reached the watcher")
    return sorted((arrived[n] - committed[n]) * 1000 for n in committed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_latency", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--backend", choices=("sqlite", "mongodb"), default="sqlite")
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--n", type=int, default=200, help="creates per writer")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "sqlite":
            url, poll = f"sqlite:///{tmp}/state.db", 50.0
            database = None
        else:
            server = os.environ.get("SWARMAPPLY_TEST_MONGODB_URL", "mongodb://127.0.0.1:27017")
            database = f"swarmapply_bench_{uuid.uuid4().hex[:8]}"
            url, poll = f"{server.rstrip('/')}/{database}", 50.0
        try:
            delays = measure(url, args.writers, args.n)
        finally:
            if database is not None:
                pymongo.MongoClient(url).drop_database(database)
    p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
    print(
        f"{args.backend}: {len(delays)} writes from {args.writers} processes; "
        f"commit -> watcher delay ms: p50 {statistics.median(delays):.1f}, p99 {p99:.1f}, "
        f"max {delays[-1]:.1f} (poll interval baseline {poll:.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
