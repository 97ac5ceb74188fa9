"""The checks: each one module naming its symbols, yielding hits with a strength and a reason."""
