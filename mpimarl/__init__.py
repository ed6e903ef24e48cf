"""mpimarl: distributed multi-agent reinforcement learning over MPI.

Rank 0 is the server (policy pool, matchmaker, evaluator, ratings, recorder); ranks 1..N-1 are
trainers. See README.md for the command line and DESIGN notes.
"""

__version__ = "0.1.0"
