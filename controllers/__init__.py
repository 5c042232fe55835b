"""Controller loops that reconcile desired against observed state (built in later issues)."""
