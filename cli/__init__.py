"""The ``swarmapply`` command."""
