"""The pruner against real stores (SQLite and MongoDB) and the real Docker Engine.

Store garbage (expired Jobs with their Tasks, old Events, stale Checkpoints, compaction) is
checked on both backends; the controller's periodic pass on SQLite with a short interval. The
docker tests make their own containers and networks (with our labels, directly through
docker-py), let the pruner loose on them, and remove whatever is left, whatever happened. The
engine may be shared with other clusters, so the pruner there sees only this test's objects
(:class:`ScopedEngine` filters the real engine's listings; removals are real).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import docker.errors
import pytest

from swarmapply.agent.model import JOB_NAME, MANAGED_BY, MANAGER, NODE_NAME, TASK_OBJECT, TASK_UID
from swarmapply.api.store import Gone, NotFound, Store
from swarmapply.cli import prune as prune_cli
from swarmapply.cli.context import Context
from swarmapply.controllers.prune_plan import ContainerInfo, NetworkEntry, PrunerSettings
from swarmapply.controllers.pruner import DockerPruneEngine, Pruner, report_summary
from swarmapply.controllers.swarm import DockerEngine

from .helpers import wait_for

Object = dict[str, Any]
API = "swarmapply.io/v1"
HOUR = 3600.0


def stamp(seconds_ago: float) -> str:
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return moment.isoformat().replace("+00:00", "Z")


def make_job(store: Store, name: str, phase: str, *, ttl: int | None = None,
             completed_ago: float | None = None) -> Object:  # fmt: skip
    spec: Object = {"tasks": [{"name": "a", "image": "busybox", "cores": 1, "memory": 1 << 26}]}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    job = store.create({"apiVersion": API, "kind": "Job", "metadata": {"name": name},
                        "spec": spec})  # fmt: skip
    status: Object = {"phase": phase}
    if completed_ago is not None:
        status["completionTime"] = stamp(completed_ago)
    return store.update_status({**job, "status": status})


def make_task(store: Store, job: Object, name: str, phase: str, *, node: str = "n1",
              finished_ago: float | None = None) -> Object:  # fmt: skip
    meta = job["metadata"]
    task = store.create({
        "apiVersion": API, "kind": "Task",
        "metadata": {"name": name, "ownerReferences": [
            {"apiVersion": API, "kind": "Job", "name": meta["name"], "uid": meta["uid"]}]},
        "spec": {"job": meta["name"], "image": "busybox", "cores": 1, "memory": 1 << 26},
    })  # fmt: skip
    status: Object = {"phase": phase, "node": node, "cpuset": "0", "memory": 1 << 26}
    if finished_ago is not None:
        status["finishTime"] = stamp(finished_ago)
    return store.update_status({**task, "status": status})


def make_event(store: Store, name: str, last_ago: float) -> Object:
    return store.create({
        "apiVersion": API, "kind": "Event", "metadata": {"name": name},
        "involvedObject": {"kind": "Job", "name": "x"}, "type": "Normal", "reason": "Test",
        "message": "m", "source": {"component": "test"}, "count": 1,
        "firstTimestamp": stamp(last_ago), "lastTimestamp": stamp(last_ago),
    })  # fmt: skip


def make_checkpoint(store: Store, name: str, task: str) -> Object:
    return store.create({"apiVersion": API, "kind": "Checkpoint", "metadata": {"name": name},
                         "spec": {"task": task}})  # fmt: skip


def exists(store: Store, kind: str, name: str) -> bool:
    try:
        store.get(kind, name)
    except NotFound:
        return False
    return True


def seed_store_garbage(store: Store) -> None:
    """Garbage and, beside each kind of it, what must survive."""
    expired = make_job(store, "expired", "Succeeded", ttl=60, completed_ago=HOUR)
    make_task(store, expired, "expired-a", "Succeeded", finished_ago=HOUR)
    fresh = make_job(store, "fresh", "Succeeded", ttl=HOUR, completed_ago=10)
    make_task(store, fresh, "fresh-a", "Succeeded", finished_ago=10)
    live = make_job(store, "live", "Running", ttl=0)
    make_task(store, live, "live-a", "Running")
    make_event(store, "old-event", 2 * HOUR)
    make_event(store, "new-event", 10)
    make_checkpoint(store, "stale-checkpoint", "no-such-task")
    make_checkpoint(store, "live-checkpoint", "live-a")


SURVIVORS = [
    ("Job", "fresh"), ("Task", "fresh-a"), ("Job", "live"), ("Task", "live-a"),
    ("Event", "new-event"), ("Checkpoint", "live-checkpoint"),
]  # fmt: skip
GARBAGE = [
    ("Job", "expired"), ("Task", "expired-a"), ("Event", "old-event"),
    ("Checkpoint", "stale-checkpoint"),
]  # fmt: skip
STORE_ONLY = PrunerSettings(finished_age=HOUR, event_age=HOUR, history_revisions=3, engine=False)


def test_store_garbage_is_removed_and_the_rest_survives(
    store_url: str, open_test_store: Callable[[str], Store]
) -> None:
    # MongoDB keeps a minute of history by default; compact without that delay here.
    mongodb = store_url.startswith("mongodb")
    store = open_test_store(store_url + ("?min_compact_age=0" if mongodb else ""))
    seed_store_garbage(store)
    pruner = Pruner(store, None, STORE_ONLY)

    dry = pruner.run_once(dry_run=True)
    planned = {(o.removal.kind, o.removal.name) for o in dry.outcomes}
    assert planned == set(GARBAGE) - {("Task", "expired-a")}
    assert all(exists(store, k, n) for k, n in GARBAGE + SURVIVORS), "a dry run removed something"

    report = pruner.run_once()
    assert {o.result for o in report.outcomes} == {"removed"}
    for kind, name in GARBAGE:
        assert not exists(store, kind, name), f"{kind} {name} should have been pruned"
    for kind, name in SURVIVORS:
        assert exists(store, kind, name), f"{kind} {name} should have survived"
    assert report.compacted is not None and report.compacted > 0
    with pytest.raises(Gone):  # history before the compaction point is gone...
        next(iter(store.watch(None, 0, timeout=0.5)))
    recent = store.revision() - STORE_ONLY.history_revisions
    assert list(store.watch(None, recent, timeout=0.2))  # ...the recent history is kept

    again = pruner.run_once()
    assert again.outcomes == ()  # idempotent: nothing left to prune


def test_a_job_changed_since_it_was_read_survives(tmp_path: Any) -> None:
    from swarmapply.api.store import open_store

    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        make_job(store, "expired", "Succeeded", ttl=0, completed_ago=10)
        pruner = Pruner(store, None, STORE_ONLY)
        plan, _ = pruner.plan()
        job = store.get("Job", "expired")
        store.update({**job, "metadata": {**job["metadata"], "labels": {"keep": "me"}}})
        outcomes = [pruner._remove(r) for r in plan.jobs]
        assert [o.result for o in outcomes] == ["skipped"]
        assert exists(store, "Job", "expired")


def test_the_controller_prunes_every_interval(tmp_path: Any) -> None:
    from swarmapply.api.store import open_store

    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        settings = PrunerSettings(interval=0.05, event_age=2.0, engine=False)
        pruner = Pruner(store, None, settings)
        stop = threading.Event()
        thread = threading.Thread(target=pruner.run, args=(stop,), daemon=True)
        thread.start()
        try:
            make_event(store, "ages-soon", 0)
            wait_for(lambda: pruner.passes >= 2, what="two passes")
            assert exists(store, "Event", "ages-soon")  # not old yet
            wait_for(lambda: not exists(store, "Event", "ages-soon"), timeout=10,
                     what="the Event pruned once it is event_age old")  # fmt: skip
        finally:
            stop.set()
            thread.join(5)
        assert not thread.is_alive()
        assert pruner.removed == 1 and pruner.failures == 0


def test_prune_cli_store_only(store: Store, store_url: str) -> None:
    seed_store_garbage(store)
    parser = argparse.ArgumentParser()
    prune_cli.add_options(parser)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(store_flag=store_url, stdout=out, stderr=err)
    args = parser.parse_args(["--dry-run", "--store-only", "--event-age", "3600"])
    assert prune_cli.run(args, ctx) == 0
    text = out.getvalue()
    assert "would remove Job expired (Succeeded 1h ago, past ttlSecondsAfterFinished=60)" in text
    assert "would remove Event old-event" in text
    assert "would remove Checkpoint stale-checkpoint (its task no-such-task is gone)" in text
    assert "new-event" not in text
    assert all(exists(store, k, n) for k, n in GARBAGE)

    out.truncate(0)
    args = parser.parse_args(["--store-only"])
    assert prune_cli.run(args, ctx) == 0
    assert "removed Job expired" in out.getvalue()
    assert "removed 1 Job, 0 containers, 0 networks, 1 Checkpoint, 1 Event" in out.getvalue()
    assert not exists(store, "Job", "expired")
    assert err.getvalue() == ""


# --- the real Docker Engine -----------------------------------------------------------------


class ScopedEngine:
    """The real engine, showing the pruner only the objects whose names contain ``tag``."""

    def __init__(self, inner: DockerPruneEngine, tag: str) -> None:
        self.inner = inner
        self.tag = tag
        self.where = inner.where

    def containers(self) -> list[ContainerInfo]:
        return [c for c in self.inner.containers() if self.tag in c.name]

    def networks(self) -> list[NetworkEntry]:
        return [n for n in self.inner.networks() if self.tag in n.name]

    def remove_container(self, container_id: str) -> None:
        self.inner.remove_container(container_id)

    def remove_network(self, network_id: str) -> None:
        self.inner.remove_network(network_id)


@pytest.fixture
def engine_scene(docker_client: Any, test_image: str, tmp_path: Any) -> Iterator[Object]:
    """A store and, on the engine, one container and network per rule; all removed after."""
    from swarmapply.api.store import open_store

    tag = f"prune-{secrets.token_hex(3)}"
    node = f"{tag}-node"
    made_containers: list[Any] = []
    made_networks: list[Any] = []
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.create({"apiVersion": API, "kind": "Node", "metadata": {"name": node}})

    def run(name: str, labels: dict[str, str], command: list[str]) -> Any:
        made = docker_client.containers.run(test_image, command, name=f"{tag}-{name}",
                                            labels=labels, detach=True)  # fmt: skip
        made_containers.append(made)
        return made

    def ours(task: Object | None, uid: str = "") -> dict[str, str]:
        if task is not None:
            uid = task["metadata"]["uid"]
        return {
            MANAGED_BY: MANAGER, NODE_NAME: node, TASK_UID: uid,
            TASK_OBJECT: task["metadata"]["name"] if task else "gone-a",
            JOB_NAME: task["spec"]["job"] if task else "gone",
        }  # fmt: skip

    def network(job: str) -> Any:
        labels = {MANAGED_BY: MANAGER, JOB_NAME: job}
        made = docker_client.networks.create(f"{tag}-{job}", driver="bridge", labels=labels)
        made_networks.append(made)
        return made

    try:
        done_job = make_job(store, "done", "Succeeded", completed_ago=HOUR)
        done = make_task(store, done_job, "done-a", "Succeeded", node=node, finished_ago=HOUR)
        live_job = make_job(store, "live", "Running")
        live = make_task(store, live_job, "live-a", "Running", node=node)
        scene = {
            "tag": tag,
            "store": store,
            "finished": run("finished", ours(done), ["true"]),
            "running": run("running", ours(live), ["sleep", "300"]),
            "orphan": run("orphan", ours(None, uid="no-such-uid"), ["sleep", "300"]),
            "stranger": run("stranger", {"test": tag}, ["sleep", "300"]),
            "unused_net": network("done"),
            "live_net": network("live"),
        }
        for name in ("done", "live"):
            job = store.get("Job", name)
            spec = {**job["spec"], "network": {"name": f"{tag}-{name}"}}
            store.update({**job, "spec": spec})
        scene["live_net"].connect(scene["running"])
        wait_for(lambda: scene["finished"].reload() or scene["finished"].status == "exited",
                 what="the finished task's container to exit")  # fmt: skip
        yield scene
    finally:
        store.close()
        for container in made_containers:
            with contextlib.suppress(docker.errors.NotFound):  # the pruner may have
                container.remove(force=True)
        for net in made_networks:
            with contextlib.suppress(docker.errors.NotFound):
                net.remove()


def engine_ids(docker_client: Any, tag: str) -> tuple[set[str], set[str]]:
    containers = {c.name for c in docker_client.containers.list(all=True) if tag in c.name}
    networks = {n.name for n in docker_client.networks.list() if tag in n.name}
    return containers, networks


@pytest.mark.docker
def test_engine_garbage_is_removed_and_live_objects_survive(
    docker_client: Any, engine_scene: Object
) -> None:
    tag, store = engine_scene["tag"], engine_scene["store"]
    engine = ScopedEngine(DockerPruneEngine(DockerEngine()), tag)
    before = engine_ids(docker_client, tag)
    assert len(before[0]) == 4 and len(before[1]) == 2

    # --dry-run through the command's own code: lists, removes nothing.
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(store_flag=store.url, stdout=out, stderr=err)
    parser = argparse.ArgumentParser()
    prune_cli.add_options(parser)
    args = parser.parse_args(["--dry-run", "--finished-age", "60"])
    assert prune_cli.prune(ctx, args, engine) == 0, err.getvalue()
    text = out.getvalue()
    assert f"would remove container {engine_scene['finished'].id[:12]} {tag}-finished " \
           "(task done-a Succeeded 1h ago)" in text  # fmt: skip
    assert f"{tag}-orphan (orphan: no Task has uid no-such-uid" in text
    assert f"would remove network {tag}-done (job done is Succeeded" in text
    assert "would remove 0 Jobs, 2 containers, 1 network" in text
    assert engine_ids(docker_client, tag) == before, "the dry run removed something"

    # The real pass.
    report = Pruner(store, engine, PrunerSettings(finished_age=60)).run_once()
    assert report.failed == [], report_summary(report)
    containers, networks = engine_ids(docker_client, tag)
    assert containers == {f"{tag}-running", f"{tag}-stranger"}
    assert networks == {f"{tag}-live"}
    engine_scene["running"].reload()
    assert engine_scene["running"].status == "running"


@pytest.mark.docker
def test_a_recently_finished_container_is_kept_until_finished_age(
    docker_client: Any, engine_scene: Object
) -> None:
    tag, store = engine_scene["tag"], engine_scene["store"]
    engine = ScopedEngine(DockerPruneEngine(DockerEngine()), tag)
    pruner = Pruner(store, engine, PrunerSettings(finished_age=2 * HOUR))
    pruner.run_once()
    containers, _ = engine_ids(docker_client, tag)
    assert f"{tag}-finished" in containers  # finished 1h ago: logs still wanted
    assert f"{tag}-orphan" not in containers


@pytest.mark.docker
def test_prune_command_dry_run_on_the_real_engine_removes_nothing(
    docker_client: Any, engine_scene: Object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command as a user runs it (unscoped: a dry run is safe on a shared engine)."""
    tag, store = engine_scene["tag"], engine_scene["store"]
    before = engine_ids(docker_client, tag)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(store_flag=store.url, stdout=out, stderr=err)
    parser = argparse.ArgumentParser()
    prune_cli.add_options(parser)
    assert prune_cli.run(parser.parse_args(["--dry-run", "--finished-age", "0"]), ctx) == 0
    assert f"{tag}-finished (task done-a Succeeded" in out.getvalue()
    assert f"{tag}-running" not in out.getvalue() and f"{tag}-stranger" not in out.getvalue()
    assert engine_ids(docker_client, tag) == before


def test_an_unreachable_engine_leaves_a_store_only_pass(store_url: str, tmp_path: Any) -> None:
    from swarmapply.api.store import open_store

    with open_store(store_url) as store:
        make_event(store, "old-event", 2 * HOUR)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(store_flag=store_url, stdout=out, stderr=err)
    parser = argparse.ArgumentParser()
    prune_cli.add_options(parser)
    args = parser.parse_args(["--docker-host", f"unix://{tmp_path}/no.sock"])
    assert prune_cli.run(args, ctx) == 1  # the engine asked for could not be reached
    assert "was not pruned" in err.getvalue() and "pruned the store only" in err.getvalue()
    assert "removed Event old-event" in out.getvalue()
    ctx.close()
