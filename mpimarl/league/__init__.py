"""The league: policy pool, ratings, match outcomes and matchmaking. Pure compute, no MPI."""

from mpimarl.league.elo import EloTable
from mpimarl.league.matchmaking import (
    MATCHMAKER_NAMES,
    LatestMatchmaker,
    Lineup,
    Matchmaker,
    OpenAIFiveMatchmaker,
    UniformMatchmaker,
    make_matchmaker,
)
from mpimarl.league.outcomes import match_score, tally
from mpimarl.league.pool import RANDOM_KEY, RANDOM_POLICY_ID, PolicyPool, Snapshot, SnapshotKey

__all__ = [
    "MATCHMAKER_NAMES",
    "RANDOM_KEY",
    "RANDOM_POLICY_ID",
    "EloTable",
    "LatestMatchmaker",
    "Lineup",
    "Matchmaker",
    "OpenAIFiveMatchmaker",
    "PolicyPool",
    "Snapshot",
    "SnapshotKey",
    "UniformMatchmaker",
    "make_matchmaker",
    "match_score",
    "tally",
]
