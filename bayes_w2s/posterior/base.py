"""The fitted :class:`Posterior` returned by every inference method."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Posterior:
    """Posterior over the true labels of ``N`` items given ``M`` weak models.

    Attributes:
        item_probs: ``[N, K]`` posterior probability of each item's true class.
        confusion: ``[M, K, K]`` posterior mean (or MAP) of each weak model's confusion
            matrix; row ``k`` is P(weak label | true class ``k``).
        class_prior: ``[K]`` the class prior π.
        model_names, label_names, item_ids: axis labels.
        model: posterior model name; method: inference method.
        history: per-iteration log joint (EM) or loss (SVI).
    """

    item_probs: np.ndarray
    confusion: np.ndarray
    class_prior: np.ndarray
    model_names: list[str]
    label_names: list
    item_ids: list | None = None
    model: str = "dawid_skene"
    method: str = "em"
    history: list[float] = field(default_factory=list)
    converged: bool = True

    @property
    def confidence(self) -> np.ndarray:
        """``[N]`` the maximum posterior class probability of each item."""
        return self.item_probs.max(-1)

    @property
    def labels(self) -> np.ndarray:
        """``[N]`` the MAP class of each item."""
        return self.item_probs.argmax(-1)

    def weak_accuracy(self) -> np.ndarray:
        """``[M]`` each weak model's estimated accuracy, Σ_k π_k θ_mkk."""
        return np.einsum("k,mkk->m", self.class_prior, self.confusion)

    def diagnostics(self) -> dict:
        """Convergence summary. EM has no chains: reports iterations and convergence."""
        return {"method": self.method, "iterations": len(self.history), "converged": self.converged,
                "final_log_joint": self.history[-1] if self.history else float("nan")}

    def __repr__(self) -> str:
        return (f"Posterior(model={self.model!r}, method={self.method!r}, N={len(self.item_probs)}, "
                f"M={len(self.model_names)}, K={len(self.label_names)})")
