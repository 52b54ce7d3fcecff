"""SQL over the lake: rule queries, analytics, and the one home of rule parameters."""
