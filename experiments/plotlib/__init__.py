"""Figures from KVLab results files (HDF5); see docs/plots.md and experiments/plot.py."""
