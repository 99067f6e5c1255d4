"""`aigcbench report`: (being written)."""
