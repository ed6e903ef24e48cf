"""Repeated Bertrand pricing with logit demand (Calvano et al. 2020) as a PettingZoo parallel env."""
