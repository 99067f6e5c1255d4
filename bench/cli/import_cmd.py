"""`aigcbench import`: (being written)."""
