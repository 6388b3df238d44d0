"""Read-time statistics over a result set: splits, attribution, invariants, breakdown, verdict."""
