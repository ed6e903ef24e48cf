"""`python -m mpimarl ...` is the same as the `mpimarl` console script."""

from mpimarl.cli import entry_point

entry_point()
