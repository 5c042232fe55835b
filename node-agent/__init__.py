"""The per-node agent and its drivers (built in a later issue)."""
