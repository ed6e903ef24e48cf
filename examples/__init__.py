"""Worked examples of bringing your own environment to mpimarl."""
