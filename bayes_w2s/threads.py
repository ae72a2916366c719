"""How many torch intra-op threads a block of small tensor work runs with."""
from __future__ import annotations

import torch


class intra_op_threads:
    """Run a block with ``n`` torch intra-op threads (``None``: unchanged), restoring the
    setting after.

    EM / VB on compressed vote patterns and a linear head on cached features are thousands
    of tiny tensor ops; a second thread only adds a synchronisation per op (on a loaded
    2-core machine OpenMP's waits made each [1024, 16] op take ~40 ms instead of
    microseconds), and one thread also makes results independent of the core count."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
