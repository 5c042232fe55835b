"""``swarmapply cluster info``: what the cluster is made of and who runs its control loops.

Shows the store (its URL with any password hidden), the Swarm manager as the deployer
published it (the join Lease; the join token is never shown), how many Nodes are Ready, not
Ready or cordoned, and for each controller which process leads it (the holder of its Lease
``controller-<name>``), when it last renewed, and whether it looks alive.

What it does not guarantee: "alive" compares the Lease's renew time with this machine's clock,
so clocks that disagree by more than a lease duration mislead it; the objects are read one
after another, not as of one revision.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from swarmapply.api.store import redact_url
from swarmapply.cli.context import Context
from swarmapply.cli.node import lease_alive
from swarmapply.cli.output import age, align
from swarmapply.controllers.deployer import read_join_info

Object = dict[str, Any]

#: The prefix of the Leases controllers campaign for.
CONTROLLER_LEASE_PREFIX = "controller-"

LABEL_WIDTH = 16

EXAMPLES = """examples:
  swarmapply cluster info                  store, Swarm manager, nodes and controller leaders
  swarmapply --store mongodb://db1/swarm cluster info
"""


def node_state(node: Mapping[str, Any]) -> str:
    """``Ready``, ``NotReady`` or ``Unknown``, from the Node's ``Ready`` condition (pure)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), None)
    return {"True": "Ready", "False": "NotReady"}.get(str(ready), "Unknown")


def node_counts(nodes: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many nodes there are, by state, and how many are cordoned (pure)."""
    counts = {"total": 0, "Ready": 0, "NotReady": 0, "Unknown": 0, "cordoned": 0}
    for node in nodes:
        counts["total"] += 1
        counts[node_state(node)] += 1
        if (node.get("spec") or {}).get("unschedulable"):
            counts["cordoned"] += 1
    return counts


def controller_rows(
    leases: Iterable[Mapping[str, Any]], now: datetime | None = None
) -> list[list[str]]:
    """One row per controller Lease: name, holder, renew time (with age) and state (pure but
    for the clock)."""
    rows: list[list[str]] = []
    for lease in sorted(leases, key=lambda obj: str(obj["metadata"]["name"])):
        name = str(lease["metadata"]["name"])
        if not name.startswith(CONTROLLER_LEASE_PREFIX):
            continue
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        renewed = spec.get("renewTime")
        when = f"{renewed} ({age(renewed, now)} ago)" if renewed else "-"
        state = ("alive" if lease_alive(lease, now) else "expired") if holder else "no leader"
        rows.append([name.removeprefix(CONTROLLER_LEASE_PREFIX), holder or "-", when, state])
    return rows


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds ``cluster`` (with ``info``) to the command parsers."""
    parser = commands.add_parser(
        "cluster",
        help="cluster-wide information: cluster info",
        description="Cluster-wide information.",
        epilog=EXAMPLES,
        **kw,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser(
        "info",
        help="the store, the Swarm manager, node counts and controller leaders",
        description="Show the store, the Swarm manager, node counts and which process leads\n"
        "each controller.",
        epilog=EXAMPLES,
        **kw,
    )
    info.set_defaults(handler=run)


def _field(label: str, value: str) -> str:
    return f"{label + ':':<{LABEL_WIDTH}}{value}"


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Prints the cluster's summary; 0."""
    store = ctx.store(must_exist=True)
    ctx.out(_field("Store", redact_url(ctx.store_url)))
    join = read_join_info(store)
    ctx.out(
        _field(
            "Swarm manager",
            join.manager_addr if join else "<none published: no deployer has set up a Swarm>",
        )
    )
    counts = node_counts(store.list("Node").items)
    parts = [f"{counts['Ready']} Ready", f"{counts['NotReady']} NotReady"]
    if counts["Unknown"]:
        parts.append(f"{counts['Unknown']} Unknown")
    parts.append(f"{counts['cordoned']} cordoned")
    ctx.out(_field("Nodes", f"{counts['total']} ({', '.join(parts)})"))
    rows = controller_rows(store.list("Lease").items)
    if not rows:
        ctx.out(_field("Controllers", "<none has run against this store>"))
        return 0
    ctx.out("Controllers:")
    for line in align([["NAME", "LEADER", "RENEWED", "STATE"], *rows]):
        ctx.out(f"  {line}")
    return 0
