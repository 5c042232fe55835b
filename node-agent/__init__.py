"""The per-node agent (``swarmapply agent``) and its drivers: docker (a real engine) and sim
(hollow nodes in memory)."""
