"""`aigcbench history`: (being written)."""
