"""A real two-node Swarm on one machine: an agent started with ``--join`` joins it by itself.

The test builds its own little network: a bridge in the root namespace (a unique name and a
/24 that no interface or route on the machine uses), two network namespaces wired to it by veth
pairs, and in each an extra Docker daemon (``nsenter --net``, own data-root, exec-root, pidfile
and socket, its own host name under ``unshare --uts``): a manager and a worker. The machine's
own engine is never used. The deployer initialises the Swarm on the manager daemon and
publishes the join facts in a fresh SQLite store; ``swarmapply agent --driver docker --join``,
pointed at the worker daemon, waits for them, joins, and registers its Node.

Teardown removes everything, whatever happened: daemons stopped by their pidfile pids (killed
after a grace period, with any process still naming the test's directory), leftover mounts
under that directory, the veths, the namespaces, the bridge and the directory.

Needs root, ``ip`` (iproute2), ``nsenter`` and ``unshare`` (util-linux) and ``dockerd``; without
them the test is skipped with a how-to (under ``CI=true`` it fails instead).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from swarmapply.api.store import NotFound, Store, open_store
from swarmapply.controllers.deployer import Deployer, read_join_info
from swarmapply.controllers.settings import DeployerSettings
from swarmapply.controllers.swarm import DockerEngine
from tests.conftest import service_missing
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.docker

API = "swarmapply.io/v1"
TOOLS = ("ip", "nsenter", "unshare", "dockerd")
DAEMON_READY_SECONDS = 30.0
STOP_GRACE_SECONDS = 15.0


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that overlaps no address or route of the machine."""
    used = []
    for argv in (("ip", "-4", "-j", "addr"), ("ip", "-4", "-j", "route")):
        for entry in json.loads(run(*argv).stdout or "[]"):
            for info in entry.get("addr_info", []):
                used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", False))
            dst = entry.get("dst")
            if dst and dst != "default":
                used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", False))
    pool = list(ipaddress.ip_network("10.200.0.0/13").subnets(new_prefix=24))
    for candidate in random.sample(pool, 50):
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise AssertionError("no free /24 in 10.200.0.0/13 for the test's bridge")


@dataclass
class Daemon:
    """One extra Docker daemon in its own network namespace."""

    name: str
    netns: str
    veth: str
    address: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "docker.pid"

    @property
    def log(self) -> Path:
        return self.directory / "dockerd.log"

    def client(self) -> Any:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=30)


@dataclass
class Cluster:
    """The bridge, namespaces and daemons of one test; :meth:`remove` undoes all of it."""

    base: Path
    bridge: str
    subnet: ipaddress.IPv4Network
    daemons: list[Daemon] = field(default_factory=list)
    made: list[tuple[str, str]] = field(default_factory=list)  # (kind, name), in order made

    def create(self, names: list[str]) -> None:
        hosts = list(self.subnet.hosts())
        prefix = self.subnet.prefixlen
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        run("ip", "addr", "add", f"{hosts[0]}/{prefix}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        tag = self.bridge.removeprefix("sa-")
        for i, name in enumerate(names, start=1):
            netns, veth = f"sa-{tag}-{name}", f"sa{tag}{name[0]}"
            daemon = Daemon(name, netns, veth, str(hosts[i]), self.base / name)
            daemon.directory.mkdir(parents=True)
            run("ip", "netns", "add", netns)
            self.made.append(("netns", netns))
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            self.made.append(("link", veth))
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            run("ip", "-n", netns, "addr", "add", f"{daemon.address}/{prefix}", "dev", "eth0")
            run("ip", "-n", netns, "link", "set", "eth0", "up")
            run("ip", "-n", netns, "link", "set", "lo", "up")
            self.daemons.append(daemon)
        for daemon in self.daemons:
            self.start(daemon, hostname=f"sa-{tag}-{daemon.name}")
        for daemon in self.daemons:
            self.wait_ready(daemon)

    def start(self, daemon: Daemon, hostname: str) -> None:
        d = daemon.directory
        dockerd = [
            "nsenter", f"--net=/var/run/netns/{daemon.netns}",
            "dockerd", "--iptables=false", "--bridge=none",
            "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
            "--pidfile", str(daemon.pidfile), "-H", daemon.url,
        ]  # fmt: skip
        script = 'hostname "$0" && exec "$@"'
        with daemon.log.open("wb") as out:
            daemon.process = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", script, hostname, *dockerd],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, daemon: Daemon) -> None:
        def ready() -> bool:
            assert daemon.process is not None
            if daemon.process.poll() is not None:
                raise AssertionError(f"dockerd {daemon.name} exited:\n{daemon.log.read_text()}")
            try:
                client = daemon.client()
            except docker.errors.DockerException:
                return False
            with contextlib.closing(client):
                return bool(client.ping())

        wait_for(ready, DAEMON_READY_SECONDS, f"dockerd {daemon.name}", interval=0.1)

    # -- teardown ---------------------------------------------------------------------------

    def remove(self) -> list[str]:
        """Undo everything; returns what could not be undone (empty when all went)."""
        problems: list[str] = []
        for daemon in self.daemons:
            problems += self._stop(daemon)
        problems += self._kill_leftovers()
        problems += self._unmount()
        for kind, name in reversed(self.made):
            argv = ("ip", "link", "del", name) if kind == "link" else ("ip", "netns", "del", name)
            done = run(*argv, check=False)
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                problems.append(f"{' '.join(argv)}: {done.stderr.strip()}")
        shutil.rmtree(self.base, ignore_errors=True)
        if self.base.exists():
            problems.append(f"could not remove {self.base}")
        return problems

    def _stop(self, daemon: Daemon) -> list[str]:
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(daemon.pidfile.read_text().strip())
        process = daemon.process
        if pid is None and process is not None:
            pid = process.pid
        if pid is None:
            return []
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if process is not None and process.pid == pid:
            try:
                process.wait(STOP_GRACE_SECONDS)
                return []
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                return [f"dockerd {daemon.name} (pid {pid}) ignored SIGTERM; killed"]
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return [f"dockerd {daemon.name} (pid {pid}) ignored SIGTERM; killed"]
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        return []

    def _kill_leftovers(self) -> list[str]:
        """SIGKILL any process whose command line names the test's directory (containerd)."""
        problems = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(self.base) in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
                problems.append(f"pid {entry.name} was still running: {cmdline[:100]}")
        return problems

    def _unmount(self) -> list[str]:
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if point == str(self.base) or point.startswith(f"{self.base}/"):
                mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            run("umount", "-l", point, check=False)
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A manager and a worker daemon, each in its own namespace on a bridge of its own."""
    if os.geteuid() != 0:
        service_missing(
            "A multi-node Swarm (root)",
            "run the test as root to let it make namespaces",
            "not root",
        )
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        service_missing(
            "A multi-node Swarm",
            "install iproute2, util-linux and docker.io (Debian) and run as root",
            f"missing {', '.join(missing)}",
        )
    tag = uuid.uuid4().hex[:8]
    built = Cluster(Path(tempfile.mkdtemp(prefix=f"sa-{tag}-")), f"sa-{tag}", free_subnet())
    try:
        built.create(["manager", "worker"])
        yield built
    finally:
        problems = built.remove()
        for daemon in built.daemons:
            if daemon.log.exists():
                sys.stderr.write(f"--- dockerd {daemon.name}\n{daemon.log.read_text()[-3000:]}")
        assert not problems, problems


def a_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"tasks": [{"name": "a", "image": "busybox", "cores": 1, "memory": 1 << 26}]},
    }


def node_status(store: Store, name: str) -> dict[str, Any]:
    try:
        return dict(store.get("Node", name).get("status") or {})
    except NotFound:
        return {}


def test_an_agent_with_join_joins_the_swarm_the_deployer_made(
    cluster: Cluster, tmp_path: Path
) -> None:
    manager, worker = cluster.daemons
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.poll_interval = 0.01  # type: ignore[attr-defined]
    log = tmp_path / "agent.log"
    env = {**os.environ, "DOCKER_HOST": worker.url}
    command = [
        sys.executable, "-m", "swarmapply", "agent", "--driver", "docker", "--join",
        "--name", "worker-1", "--store", url, "--heartbeat", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        agent = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    manager_client = manager.client()
    output: Callable[[], str] = lambda: log.read_text(errors="replace")  # noqa: E731
    try:
        # Started before the Swarm exists, the agent waits for the join facts.
        wait_for(lambda: "not published yet" in output(), 20, "the agent waiting to join")
        assert node_status(store, "worker-1") == {}

        settings = DeployerSettings(docker_host=manager.url, advertise_addr=manager.address)
        engine = DockerEngine(settings.docker_host)
        try:
            store.create(a_job("join-it"))
            Deployer(store, engine, settings).reconcile("join-it")
        finally:
            engine.close()
        info = read_join_info(store)
        assert info is not None and info.manager_addr == f"{manager.address}:2377"

        status = wait_for(
            lambda: (s := node_status(store, "worker-1")).get("swarmNodeID") and s,
            30,
            "Node worker-1 registered with its Swarm node id",
        )
        assert status["role"] == "worker"
        nodes = {n.id: n.attrs for n in manager_client.nodes.list()}
        assert len(nodes) == 2, nodes
        joined = nodes[status["swarmNodeID"]]
        assert joined["Spec"]["Role"] == "worker"
        assert joined["Description"]["Hostname"].endswith("-worker")
        assert "Swarm membership: joined" in output()

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0, output()
    except BaseException:
        sys.stderr.write(f"--- agent\n{output()}\n")
        raise
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        manager_client.close()
        store.close()
