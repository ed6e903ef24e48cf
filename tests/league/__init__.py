"""Tests of mpimarl.league."""
