"""Feature schema v1 and its one implementation, pure: the arithmetic, the batch builder, the streaming engine,
the one live symbol state, labels, and the day-by-day build over a lake port. No IO, no wall clock."""
