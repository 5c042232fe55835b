"""A real N-node Docker Swarm on one machine: namespaces, a bridge and one dockerd per node.

:class:`SwarmNodes` builds its own little network: a bridge in the root namespace (a unique
name and a /24 that no interface or route on the machine uses, see :func:`free_subnet`), one
network namespace per node wired to it by a veth pair, and in each an extra Docker daemon
(:class:`Daemon`: ``nsenter --net``, its own data-root, exec-root, pidfile and socket under the
cluster's directory, its own host name under ``unshare --uts``). :meth:`SwarmNodes.create`
makes the first node a Swarm manager, joins the others as workers through the Docker API and
loads the test image into every daemon from the machine's own engine (which is otherwise never
used). It can also start ``swarmapply agent`` per node and ``swarmapply controllers`` against
the manager, tracking every process it starts.

Guarantees: :meth:`SwarmNodes.remove` undoes everything, whatever happened (also after a
partial :meth:`~SwarmNodes.create`): the processes it started (by pid), the daemons (by their
pidfile pid, killed after a grace period; any process still naming the cluster's directory is
killed and reported), leftover mounts under the directory, the veths, the namespaces, the
bridge and the directory; it returns what it could not undo or found left over. The state of
a cluster can be written to a file and read back (:meth:`~SwarmNodes.state`,
:meth:`~SwarmNodes.from_state`), so another process can tear it down.

Not guaranteed: that the machine allows any of this. It needs root, ``ip`` (iproute2),
``nsenter`` and ``unshare`` (util-linux) and ``dockerd``; :func:`missing_requirements` says
what is absent. Containers die with their daemons; nothing is cleaned inside a daemon.

This module imports nothing from the test framework, so scripts can use it too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

log = logging.getLogger(__name__)

#: The image loaded into every daemon (built by the tests' ``test_image`` fixture).
TEST_IMAGE = "swarmapply-test/busybox:1"
#: The programs the cluster needs besides Python.
TOOLS = ("ip", "nsenter", "unshare", "dockerd")
#: Seconds a daemon may take to answer after it was started.
DAEMON_READY_SECONDS = 30.0
#: Seconds a daemon or process may take to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 15.0
#: The port Swarm managers listen on for joining nodes.
SWARM_PORT = 2377
#: The characters of each log printed by :meth:`SwarmNodes.logs`.
LOG_TAIL = 3000


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` (30 s at most), capturing its output; raises on failure when ``check``."""
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def missing_requirements() -> str | None:
    """Why no cluster can be built here (not root, tools missing), or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that overlaps no address or route of the machine."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for argv in (("ip", "-4", "-j", "addr"), ("ip", "-4", "-j", "route")):
        for entry in json.loads(run(*argv).stdout or "[]"):
            for info in entry.get("addr_info", []):
                used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", False))
            dst = entry.get("dst")
            if dst and dst != "default":
                used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", False))
    pool = list(ipaddress.IPv4Network("10.200.0.0/13").subnets(new_prefix=24))
    for candidate in random.sample(pool, 50):
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError("no free /24 in 10.200.0.0/13 for the cluster's bridge")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, chars: int = LOG_TAIL) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


@dataclass
class Process:
    """One ``swarmapply`` subprocess started by a cluster; its output goes to ``log``."""

    what: str
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL (no cleanup) and reap."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM, then wait; returns the exit status.

        Raises:
            RuntimeError: It did not exit within ``timeout`` seconds (it is then killed); the
                message holds the tail of its output.
        """
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"{self.what} (pid {self.pid}) did not exit within {timeout:g}s of SIGTERM:\n"
                f"{_tail(self.log)}"
            ) from None


@dataclass
class Daemon:
    """One extra Docker daemon in its own network namespace, with its own host name."""

    name: str
    netns: str
    veth: str
    address: str
    directory: Path
    hostname: str
    process: subprocess.Popen[bytes] | None = None
    #: The Swarm node id, once the daemon is in the Swarm.
    swarm_node_id: str | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def url(self) -> str:
        """The daemon's address for ``DOCKER_HOST`` (a unix socket URL)."""
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "docker.pid"

    @property
    def log(self) -> Path:
        return self.directory / "dockerd.log"

    def client(self, timeout: int = 30) -> Any:
        """A new docker-py client of this daemon (the caller closes it)."""
        return docker.DockerClient(base_url=self.url, version="auto", timeout=timeout)

    def start_engine(self, *, wait: bool = True) -> None:
        """Starts dockerd with the node's directories; a Swarm member rejoins by itself.

        Args:
            wait: Return only once the daemon answers (see :meth:`wait_ready`).
        """
        d = self.directory
        dockerd = [
            "nsenter", f"--net=/var/run/netns/{self.netns}",
            "dockerd", "--iptables=false", "--bridge=none", "--experimental",
            "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
            "--pidfile", str(self.pidfile), "-H", self.url,
        ]  # fmt: skip
        script = 'hostname "$0" && exec "$@"'
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", script, self.hostname, *dockerd],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = DAEMON_READY_SECONDS) -> None:
        """Waits until the daemon answers a ping.

        Raises:
            RuntimeError: It exited (the message holds its log) or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"dockerd {self.name} exited:\n{_tail(self.log)}")
            if self.socket.exists():
                try:
                    with contextlib.closing(self.client(timeout=5)) as client:
                        if client.ping():
                            return
                except docker.errors.DockerException:
                    pass  # not listening yet: poll again
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd {self.name} did not answer within {timeout:g}s")
            time.sleep(0.05)

    def kill_containers(self) -> None:
        """SIGKILLs every running container of the daemon, if it answers (else nothing).

        A daemon that stops gives each container its stop timeout (10 s by default) first;
        killing them beforehand makes :meth:`stop_engine` quick.
        """
        if not self.socket.exists():
            return
        try:
            with contextlib.closing(self.client(timeout=5)) as client:
                for entry in client.api.containers(filters={"status": "running"}):
                    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                        client.api.kill(entry["Id"])
        except docker.errors.DockerException as exc:
            log.warning("dockerd %s: containers not killed: %s", self.name, exc)

    def stop_engine(self, grace: float = STOP_GRACE_SECONDS) -> list[str]:
        """SIGTERM to dockerd (by its pid), wait, SIGKILL after ``grace`` seconds.

        Returns:
            What went wrong (it had to be killed); empty after a clean stop or when it was
            not running.
        """
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
        process = self.process
        if pid is None and process is not None and process.poll() is None:
            pid = process.pid
        if pid is None or not _alive(pid):
            return []
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        problems = []
        if process is not None and process.pid == pid:
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                problems.append(f"dockerd {self.name} (pid {pid}) ignored SIGTERM; killed")
        else:
            deadline = time.monotonic() + grace
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                problems.append(f"dockerd {self.name} (pid {pid}) ignored SIGTERM; killed")
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        return problems


@dataclass
class SwarmNodes:
    """The bridge, namespaces, daemons and processes of one cluster; :meth:`remove` undoes all.

    Make one with :meth:`new`, then :meth:`create` its nodes.
    """

    base: Path
    bridge: str
    subnet: ipaddress.IPv4Network
    daemons: list[Daemon] = field(default_factory=list)
    #: (kind, name) of every link and namespace made, in the order made.
    made: list[tuple[str, str]] = field(default_factory=list)
    #: Every process started (agents, controllers), in order.
    processes: list[Process] = field(default_factory=list)
    #: The running agent of each node, by node name.
    agents: dict[str, Process] = field(default_factory=dict)

    @classmethod
    def new(cls, parent: Path | None = None) -> SwarmNodes:
        """A cluster with a unique tag: a fresh directory, a bridge name and a free /24.

        Args:
            parent: Where the cluster's directory is made (default the temporary directory;
                keep it short, socket paths are limited to about 100 characters).
        """
        tag = uuid.uuid4().hex[:8]
        subnet = free_subnet()
        base = Path(tempfile.mkdtemp(prefix=f"sa-{tag}-", dir=parent))
        return cls(base, f"sa-{tag}", subnet)

    @property
    def tag(self) -> str:
        return self.bridge.removeprefix("sa-")

    @property
    def manager(self) -> Daemon:
        """The first node: the Swarm manager."""
        return self.daemons[0]

    def node(self, name: str) -> Daemon:
        """The node called ``name``.

        Raises:
            KeyError: No node has that name.
        """
        for daemon in self.daemons:
            if daemon.name == name:
                return daemon
        raise KeyError(f"no node {name!r}; nodes: {', '.join(d.name for d in self.daemons)}")

    # -- building -----------------------------------------------------------------------------

    def create(
        self, names: Sequence[str], *, swarm: bool = True, image: str | None = TEST_IMAGE
    ) -> None:
        """Builds the network and one daemon per name, then the Swarm, then loads ``image``.

        Args:
            names: The nodes' names; the first becomes the manager.
            swarm: Initialise the Swarm on the first node and join the others as workers;
                False leaves every daemon outside any Swarm.
            image: Loaded into every daemon from the machine's engine; None loads nothing.

        Raises:
            RuntimeError, subprocess.CalledProcessError, docker.errors.DockerException: A step
                failed; what was made so far is left for :meth:`remove`.
        """
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"node names must be given and distinct, got {list(names)}")
        hosts = list(self.subnet.hosts())
        prefix = self.subnet.prefixlen
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        run("ip", "addr", "add", f"{hosts[0]}/{prefix}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for i, name in enumerate(names, start=1):
            netns, veth = f"sa-{self.tag}-{name}", f"sa{self.tag}v{i}"
            daemon = Daemon(
                name, netns, veth, str(hosts[i]), self.base / name, f"sa-{self.tag}-{name}"
            )
            daemon.directory.mkdir(parents=True)
            self.daemons.append(daemon)
            run("ip", "netns", "add", netns)
            self.made.append(("netns", netns))
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            self.made.append(("link", veth))
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            run("ip", "-n", netns, "addr", "add", f"{daemon.address}/{prefix}", "dev", "eth0")
            run("ip", "-n", netns, "link", "set", "eth0", "up")
            run("ip", "-n", netns, "link", "set", "lo", "up")
        for daemon in self.daemons:
            daemon.start_engine(wait=False)
        _each(self.daemons, lambda d: d.wait_ready())
        if swarm:
            self._make_swarm()
        if image is not None:
            self.load_image(image)

    def _make_swarm(self) -> None:
        manager = self.manager
        with contextlib.closing(manager.client()) as client:
            client.swarm.init(
                advertise_addr=manager.address, listen_addr=f"{manager.address}:{SWARM_PORT}"
            )
            token = client.swarm.attrs["JoinTokens"]["Worker"]
            manager.swarm_node_id = client.info()["Swarm"]["NodeID"]

        def join(daemon: Daemon) -> None:
            with contextlib.closing(daemon.client()) as client:
                client.swarm.join(
                    remote_addrs=[f"{manager.address}:{SWARM_PORT}"],
                    join_token=token,
                    advertise_addr=daemon.address,
                    listen_addr=f"{daemon.address}:{SWARM_PORT}",
                )
                daemon.swarm_node_id = client.info()["Swarm"]["NodeID"]

        _each(self.daemons[1:], join)

    def load_image(self, image: str) -> None:
        """Copies ``image`` from the machine's engine into every node's daemon.

        Raises:
            docker.errors.ImageNotFound: The machine's engine does not have it.
        """
        with contextlib.closing(docker.from_env(version="auto", timeout=60)) as local:
            data = b"".join(local.images.get(image).save(named=True))

        def load(daemon: Daemon) -> None:
            with contextlib.closing(daemon.client()) as client:
                client.images.load(data)

        _each(self.daemons, load)

    # -- processes ----------------------------------------------------------------------------

    def agent_command(self, node: Daemon | str, store_url: str, *extra: str) -> list[str]:
        """The ``swarmapply agent`` arguments for ``node`` (run with DOCKER_HOST = its url)."""
        name = node if isinstance(node, str) else node.name
        return [
            "agent", "--driver", "docker", "--name", name, "--store", store_url,
            "--heartbeat", "0.5", "--resync", "2", *extra,
        ]  # fmt: skip

    def controllers_command(self, store_url: str, *extra: str) -> list[str]:
        """The ``swarmapply controllers`` arguments that deploy on the manager's daemon."""
        manager = self.manager
        return [
            "controllers", "--store", store_url, "--docker-host", manager.url,
            "--swarm-advertise-addr", manager.address, "--lease-duration", "2", *extra,
        ]  # fmt: skip

    def start_agent(self, node: Daemon | str, store_url: str, *extra: str) -> Process:
        """Starts ``swarmapply agent`` for ``node`` against its daemon; returns the process.

        Raises:
            RuntimeError: The node's agent is running already.
        """
        daemon = self.node(node) if isinstance(node, str) else node
        current = self.agents.get(daemon.name)
        if current is not None and current.alive():
            raise RuntimeError(f"the agent of {daemon.name} (pid {current.pid}) still runs")
        env = {**os.environ, "DOCKER_HOST": daemon.url}
        for key in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
            env.pop(key, None)
        process = self._start(
            f"agent-{daemon.name}", self.agent_command(daemon, store_url, *extra), env
        )
        self.agents[daemon.name] = process
        return process

    def kill_agent(self, node: Daemon | str) -> None:
        """SIGKILLs the agent of ``node`` and reaps it (nothing released, containers kept)."""
        self._agent(node).kill()

    def stop_agent(self, node: Daemon | str, timeout: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERMs the agent of ``node`` and waits; returns its exit status."""
        return self._agent(node).stop(timeout)

    def start_controllers(self, store_url: str, *extra: str) -> Process:
        """Starts ``swarmapply controllers`` deploying on the manager's daemon."""
        return self._start("controllers", self.controllers_command(store_url, *extra), None)

    def _agent(self, node: Daemon | str) -> Process:
        name = node if isinstance(node, str) else node.name
        try:
            return self.agents[name]
        except KeyError:
            raise KeyError(f"no agent was started for {name!r}") from None

    def _start(self, what: str, args: list[str], env: dict[str, str] | None) -> Process:
        index = sum(p.what == what for p in self.processes)
        log = self.base / f"{what}-{index}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "swarmapply", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        process = Process(what, log, popen)
        self.processes.append(process)
        return process

    def logs(self, tail: int = LOG_TAIL) -> str:
        """The last ``tail`` characters of every process's and daemon's log, with headers."""
        parts = [f"--- {p.log.name} (pid {p.pid})\n{_tail(p.log, tail)}" for p in self.processes]
        parts += [f"--- dockerd {d.name}\n{_tail(d.log, tail)}" for d in self.daemons]
        return "\n".join(parts) + "\n"

    # -- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What :meth:`from_state` needs to tear this cluster down from another process."""
        return {
            "base": str(self.base),
            "bridge": self.bridge,
            "subnet": str(self.subnet),
            "made": [list(entry) for entry in self.made],
            "daemons": [
                {
                    "name": d.name,
                    "netns": d.netns,
                    "veth": d.veth,
                    "address": d.address,
                    "directory": str(d.directory),
                    "hostname": d.hostname,
                    "swarmNodeID": d.swarm_node_id,
                }
                for d in self.daemons
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SwarmNodes:
        """The cluster :meth:`state` described (its daemons are found by their pidfiles)."""
        daemons = [
            Daemon(
                d["name"],
                d["netns"],
                d["veth"],
                d["address"],
                Path(d["directory"]),
                d["hostname"],
                swarm_node_id=d.get("swarmNodeID"),
            )
            for d in state["daemons"]
        ]
        made = [(str(kind), str(name)) for kind, name in state["made"]]
        subnet = ipaddress.IPv4Network(state["subnet"])
        return cls(Path(state["base"]), state["bridge"], subnet, daemons, made)

    # -- teardown -----------------------------------------------------------------------------

    def remove(self) -> list[str]:
        """Undoes everything, whatever happened; returns what could not be undone or was left.

        Processes are killed, then the daemons' containers, the daemons are stopped (in
        parallel), leftover processes naming the cluster's directory killed, mounts under it
        unmounted, links and namespaces deleted in reverse order, and the directory removed.
        """
        problems: list[str] = []
        for process in self.processes:
            try:
                process.kill()
            except (OSError, subprocess.TimeoutExpired) as exc:
                problems.append(f"{process.what} (pid {process.pid}): {exc}")
        _each(self.daemons, lambda d: d.kill_containers(), collect=True)
        for stopped in _each(self.daemons, lambda d: d.stop_engine(), collect=True):
            problems += stopped
        problems += self._kill_leftovers()
        self._unmount()
        for kind, name in reversed(self.made):
            argv = ("ip", "link", "del", name) if kind == "link" else ("ip", "netns", "del", name)
            done = run(*argv, check=False)
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                problems.append(f"{' '.join(argv)}: {done.stderr.strip()}")
        shutil.rmtree(self.base, ignore_errors=True)
        if self.base.exists():
            problems.append(f"could not remove {self.base}")
        return problems

    def _kill_leftovers(self) -> list[str]:
        """SIGKILLs any process whose command line names the cluster's directory."""
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

    def _unmount(self) -> None:
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if point == str(self.base) or point.startswith(f"{self.base}/"):
                mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            run("umount", "-l", point, check=False)


#: The type of the ``make_swarm_nodes`` fixture: ``make(names, swarm=True, image=TEST_IMAGE)``.
MakeSwarmNodes = Callable[..., SwarmNodes]


def _each(
    daemons: Iterable[Daemon], work: Callable[[Daemon], Any], *, collect: bool = False
) -> list[Any]:
    """Runs ``work`` on every daemon in parallel; re-raises the first failure unless
    ``collect``, in which case a failure becomes a one-problem list among the results."""
    daemons = list(daemons)
    if not daemons:
        return []
    with ThreadPoolExecutor(max_workers=len(daemons)) as pool:
        futures = [(d, pool.submit(work, d)) for d in daemons]
    results = []
    for daemon, future in futures:
        exc = future.exception()
        if exc is None:
            results.append(future.result())
        elif collect:
            results.append([f"{daemon.name}: {exc}"])
        else:
            raise exc
    return results
