"""swarmapply: a declarative control plane for core-pinned container jobs on Docker Swarm.

The package maps the repository's top-level folders: ``api/`` (object model, schemas,
admission, store) is :mod:`swarmapply.api`, ``controllers/`` is
:mod:`swarmapply.controllers`, ``node-agent/`` is :mod:`swarmapply.agent` and ``cli/`` is
:mod:`swarmapply.cli`. This root module holds only the version and the root exceptions.
"""

from swarmapply.errors import PermanentError, SwarmapplyError, TemporaryError

__version__ = "0.1.0"

__all__ = ["PermanentError", "SwarmapplyError", "TemporaryError", "__version__"]
