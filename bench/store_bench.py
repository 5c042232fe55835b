"""Write throughput of the object store, beside the raw database it is built on.

Per backend, in one run, single-threaded, one call per object:

* create: N small Job objects (two tasks each), one ``store.create`` each;
* update: N compare-and-swap ``store.update`` calls, each changing ``spec`` (so bumping
  ``metadata.generation``), one per object, each carrying the ``resourceVersion`` of the
  object the previous write returned;
* the raw baseline for both, measured in the same run: the objects exactly as the store
  wrote them, written with nothing else. SQLite: their JSON text (serialised in the loop, as
  the store does) into a one-table WAL database with the same ``synchronous``, one
  ``INSERT`` (then ``UPDATE ... WHERE name = ?``) per transaction. MongoDB: pymongo
  ``insert_one`` (then ``replace_one``) of the same documents into a fresh collection.

SQLite runs with ``synchronous=full`` (the store's default) and with ``normal``, each in a
temporary directory removed afterwards; MongoDB in a fresh, uniquely named database dropped
afterwards. Throughput is ops over the whole loop (``time.perf_counter``); latency percentiles
are per store call. A store loop still running after ``--max-seconds`` stops early (the
table's ``n`` column says how many ops it did; the raw baseline then does the same ones):
per-write cost grows with the store's size on servers that scan (FerretDB 1.x on SQLite).

Not measured: reads, lists, watches, deletes, concurrent writers, CAS conflicts and retries,
large objects or stores, and opening the store (one warm-up write per target is excluded).
The figures depend on the disk's fsync and on the MongoDB server: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import pymongo
import pymongo.errors

from swarmapply.api.store import Object, Store, open_store

MONGODB_URL_ENV = "SWARMAPPLY_TEST_MONGODB_URL"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017"
MiB = 1024**2
Rows = list[dict[str, Any]]


def job(i: int) -> Object:
    """A small but realistic Job: two tasks with image, command, cores, memory, labels."""
    trainer = {"name": "trainer", "image": "registry.example.com/ml/trainer:1.4.2", "cores": 4}
    trainer |= {"memory": 8192 * MiB, "command": ["python", "-m", "train", f"--seed={i}"]}
    logger = {"name": "logger", "image": "busybox:1.36", "cores": 1, "memory": 256 * MiB}
    logger |= {"command": ["sh", "-c", "tail -F /logs/train.log"]}
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": f"job-{i}", "labels": {"team": f"team-{i % 7}", "tier": "batch"}},
        "spec": {"tasks": [trainer, logger], "restartPolicy": "OnFailure"},
    }


def changed(obj: Object, k: int) -> Object:
    """``obj`` with update ``k`` applied: a new priority and first task command."""
    spec = obj["spec"]
    first = {**spec["tasks"][0], "command": ["python", "-m", "train", f"--epochs={k + 11}"]}
    return {**obj, "spec": {**spec, "priority": k + 1, "tasks": [first, *spec["tasks"][1:]]}}


class Timing(NamedTuple):
    ops: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float


def timed(n: int, op: Callable[[int], object], budget: float = 0.0) -> Timing:
    """Run ``op(0..n-1)``, stopping early once ``budget`` seconds (if > 0) have passed."""
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < n and not (0 < budget <= time.perf_counter() - start):
        t0 = time.perf_counter()
        op(len(latencies))
        latencies.append(time.perf_counter() - t0)
    done, ops_per_s = len(latencies), len(latencies) / (time.perf_counter() - start)
    latencies.sort()
    p99 = latencies[-(-99 * done // 100) - 1]  # nearest rank: the ceil(0.99 n)-th smallest
    return Timing(done, ops_per_s, statistics.median(latencies) * 1e3, p99 * 1e3)


Written = dict[str, list[Object]]  # operation: the objects as the store wrote them


def measure_store(store: Store, n: int, budget: float) -> tuple[dict[str, Timing], Written]:
    store.update(changed(store.create({**job(n), "metadata": {"name": "warm-up"}}), 0))
    jobs = [job(i) for i in range(n)]
    written: Written = {"create": [{} for _ in range(n)], "update": [{} for _ in range(n)]}

    def create(k: int) -> None:
        written["create"][k] = store.create(jobs[k])

    def update(k: int) -> None:  # CAS: the created object carries its resourceVersion
        written["update"][k] = store.update(changed(written["create"][k], k))

    timings = {"create": timed(n, create, budget)}
    timings["update"] = timed(timings["create"].ops, update, budget)
    written = {op: objs[: timings[op].ops] for op, objs in written.items()}
    if {obj["metadata"]["generation"] for obj in written["update"]} != {2}:
        raise RuntimeError("an update did not bump metadata.generation exactly once")
    return timings, written


def measure_raw_sqlite(path: Path, synchronous: str, written: Written) -> dict[str, Timing]:
    def dumps(obj: Object) -> str:
        return json.dumps(obj, separators=(",", ":"), sort_keys=True)  # as the store does

    created, updated = written["create"], written["update"]
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:  # autocommit
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY, data TEXT NOT NULL)")
        conn.execute("INSERT INTO jobs VALUES ('warm-up', '{}')")
        insert = "INSERT INTO jobs (name, data) VALUES (?, ?)"
        update = "UPDATE jobs SET data = ? WHERE name = ?"
        return {
            "create": timed(
                len(created), lambda k: conn.execute(insert, (f"job-{k}", dumps(created[k])))
            ),
            "update": timed(
                len(updated), lambda k: conn.execute(update, (dumps(updated[k]), f"job-{k}"))
            ),
        }


def mongo_client(url: str, **options: Any) -> pymongo.MongoClient[dict[str, Any]]:
    return pymongo.MongoClient(url, **options)


def measure_raw_mongodb(url: str, written: Written) -> dict[str, Timing]:
    created, updated = written["create"], written["update"]
    with mongo_client(url) as client:
        coll = client.get_default_database()["raw_jobs"]
        coll.insert_one({"_id": "warm-up"})
        return {
            "create": timed(
                len(created), lambda k: coll.insert_one({"_id": f"job-{k}", **created[k]})
            ),
            "update": timed(
                len(updated), lambda k: coll.replace_one({"_id": f"job-{k}"}, updated[k])
            ),
        }


def rows(backend: str, store: dict[str, Timing], raw: dict[str, Timing]) -> Rows:
    return [
        {
            "backend": backend,
            "operation": op,
            "n": t.ops,
            "store_ops_per_s": round(t.ops_per_s, 1),
            "raw_ops_per_s": round(raw[op].ops_per_s, 1),
            "raw_over_store": round(raw[op].ops_per_s / t.ops_per_s, 2),
            "store_p50_ms": round(t.p50_ms, 3),
            "store_p99_ms": round(t.p99_ms, 3),
        }
        for op, t in store.items()
    ]


def bench_sqlite(synchronous: str, n: int, budget: float) -> Rows:
    with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp:
        with closing(open_store(f"sqlite:///{tmp}/state.db?synchronous={synchronous}")) as store:
            measured, written = measure_store(store, n, budget)
        raw = measure_raw_sqlite(Path(tmp, "raw.db"), synchronous, written)
    return rows(f"sqlite synchronous={synchronous}", measured, raw)


def mongodb_problem(url: str) -> str | None:
    """Why the MongoDB server at ``url`` cannot be used, or None when it answers a ping."""
    try:
        with mongo_client(url, serverSelectionTimeoutMS=3000) as client:
            client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        return f"{type(exc).__name__}: {str(exc).split(' (configured timeouts')[0][:160]}"
    return None


def bench_mongodb(server: str, n: int, budget: float) -> Rows:
    db_name = f"swarmapply_bench_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(server)  # keep the server's options, replace any database it names
    url = urlunsplit((parts.scheme, parts.netloc, f"/{db_name}", parts.query, ""))
    try:
        with closing(open_store(url)) as store:
            measured, written = measure_store(store, n, budget)
        raw = measure_raw_mongodb(url, written)
    finally:
        with mongo_client(url) as client:
            client.drop_database(db_name)
    return rows("mongodb", measured, raw)


COLUMNS = {  # column title: (result key, format)
    "n": ("n", "d"),
    "store ops/s": ("store_ops_per_s", ".1f"),
    "raw ops/s": ("raw_ops_per_s", ".1f"),
    "raw/store": ("raw_over_store", ".2f"),
    "store p50 ms": ("store_p50_ms", ".2f"),
    "store p99 ms": ("store_p99_ms", ".2f"),
}


def print_table(results: Rows) -> None:
    table = [("backend", "operation", *COLUMNS)]
    for r in results:
        figures = (format(r[key], spec) for key, spec in COLUMNS.values())
        table.append((r["backend"], r["operation"], *figures))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    table.insert(1, tuple("-" * w for w in widths))
    for row in table:
        cells = (
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--n", type=int, default=2000, help="objects (and updates) per backend")
    parser.add_argument("--backends", default="sqlite,mongodb", help="any of: sqlite,mongodb")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="stop a store loop after this long (0: never)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this file")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.n < 1 or not backends or set(backends) - {"sqlite", "mongodb"}:
        parser.error("--n must be at least 1, --backends a comma-separated list of sqlite, mongodb")

    print(f"store_bench: N={args.n} per backend, single thread, Python {sys.version.split()[0]}")
    targets: list[tuple[str, Callable[[str, int, float], Rows], str]] = []
    notes: list[str] = []
    if "sqlite" in backends:
        targets += [(f"sqlite synchronous={s}", bench_sqlite, s) for s in ("full", "normal")]
    if "mongodb" in backends:
        server = os.environ.get(MONGODB_URL_ENV, DEFAULT_MONGODB_URL)
        if problem := mongodb_problem(server):
            notes.append(
                f"mongodb: SKIPPED, no MongoDB wire-protocol server at {server} ({problem}); "
                f"to include it, start FerretDB (or mongod) there or set {MONGODB_URL_ENV}"
            )
            print(notes[-1], flush=True)
        else:
            targets.append(("mongodb", bench_mongodb, server))

    results: Rows = []
    failed = False
    for label, run, target in targets:
        print(f"running {label} ...", flush=True)
        try:
            results += run(target, args.n, args.max_seconds)
            notes += [
                f"{label} {r['operation']}: stopped after --max-seconds={args.max_seconds:g} "
                f"at {r['n']} of {args.n} ops"
                for r in results[-2:]
                if r["n"] < args.n
            ]
        except Exception as exc:  # report it, go on with the other backends, exit 1
            failed = True
            notes.append(f"{label}: FAILED: {type(exc).__name__}: {exc}")
            print(notes[-1], file=sys.stderr, flush=True)
    print()
    print_table(results)
    for note in notes:
        print(note)
    if args.json:
        document = {**vars(args), "results": results, "notes": notes}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
