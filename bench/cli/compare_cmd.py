"""`aigcbench compare`: (being written)."""
