"""Data sets on disk: image folders, leak-free splits and the procedural sky generator (no torch)."""
