"""The order management system: order states, the manager, the router, reconciliation with the venue."""
