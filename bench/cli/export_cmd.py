"""`aigcbench export`: (being written)."""
