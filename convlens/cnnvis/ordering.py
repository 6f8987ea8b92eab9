"""Row reordering of activation matrices (CNNVis section 6.2.2)."""

from __future__ import annotations

import numpy as np


def reorder_rows(matrix: np.ndarray, exact_limit: int = 10) -> np.ndarray:
    raise NotImplementedError
