"""Draw a run's figures: `python analysis/plot_run.py RUN.h5 [--out DIR]`.

The same as `python -m mpimarl report RUN.h5 [--out DIR]`; the code lives in `mpimarl/report.py`.
"""

from __future__ import annotations

import sys

from mpimarl.report import main

if __name__ == "__main__":
    sys.exit(main())
