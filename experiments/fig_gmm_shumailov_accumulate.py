r"""Shumailov et al.'s GMM workload (SI Figs. 6/8) with the **accumulate** regime instead of replace.

Same model, real data and EM settings as ``fig_gmm_shumailov.py`` (2-component full-covariance GMM, N(0, I₂) real
data, N = 1000 new samples per generation, tol 1e-5, max_iter 2000), but every fit uses the real data and every
synthetic batch so far (the engine's fixed-size buffer with frequency weights). Empirical: no closed form is
claimed.

Fixed shapes make every EM iteration scan the whole preallocated pool (N × fits rows), so an accumulate chain costs
O(fits²·N): the full figure runs 8 chains × 101 fits (pool 101,000 rows; 237 s of simulation measured on 2 shared
CPU cores), ``--quick`` 2 chains × 11 fits (about 10 s). Snapshots at g ∈ {0, 50, 100} (and the last generation).

Run: ``python experiments/fig_gmm_shumailov_accumulate.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

NAME = "gmm_shumailov_accumulate"
DESCRIPTION = "Shumailov's GMM workload with accumulate: L2 distance to the generation-0 fit stays small"


def _replace_figure():
    path = Path(__file__).with_name("fig_gmm_shumailov.py")
    spec = importlib.util.spec_from_file_location("fig_gmm_shumailov_shared", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    from collapse_theory import Accumulate

    return _replace_figure().main(argv, regime=Accumulate(), name=NAME, description=DESCRIPTION, chains=(8, 2),
                                  generations=(100, 10), regime_label="accumulate")


if __name__ == "__main__":
    raise SystemExit(main())
