"""Tests for mpimarl.envs (adapters, loader, roles, catalog, checker) on real environments."""
