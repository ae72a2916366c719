"""The fitted :class:`Posterior` returned by every model and inference method."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

#: R-hat above this is reported as not converged (Vehtari et al., 2021)
RHAT_MAX = 1.01


class DrawDiagnostics:
    """Convergence checks shared by every fitted posterior that has ``draws``, ``log_lik``
    ``[chains, draws, items]``, ``sample_stats``, ``history``, ``converged``, ``model``,
    ``method`` and a ``to_inference_data()``."""

    @property
    def num_draws(self) -> int:
        return 0 if self.log_lik is None else self.log_lik.shape[0] * self.log_lik.shape[1]

    def diagnostics(self, warn: bool = True) -> dict:
        """Max R-hat and min bulk ESS over the global sites, divergences; EM/SVI report their
        iterations instead (R-hat needs several chains). Warns when R-hat > 1.01 or any
        transition diverged."""
        out = {"model": self.model, "method": self.method, "iterations": len(self.history),
               "converged": self.converged, "max_rhat": float("nan"), "min_ess_bulk": float("nan"),
               "divergences": int(self.sample_stats["diverging"].sum()) if "diverging" in self.sample_stats else 0}
        chains = self.log_lik.shape[0] if self.log_lik is not None else 0
        if chains >= 2 and self.num_draws >= 8:
            import arviz as az

            idata = self.to_inference_data()
            names = [n for n in self.draws if n in idata.posterior and n != "item_prob"]
            rhat = az.rhat(idata, var_names=names)
            ess = az.ess(idata, var_names=names, method="bulk")
            out["max_rhat"] = float(max(np.nanmax(rhat[n].values) for n in names))
            out["min_ess_bulk"] = float(min(np.nanmin(ess[n].values) for n in names))
            out["converged"] = out["max_rhat"] <= RHAT_MAX
            if warn and out["max_rhat"] > RHAT_MAX:
                warnings.warn(f"{self.model}/{self.method}: max R-hat {out['max_rhat']:.3f} > {RHAT_MAX}; "
                              "run longer chains before trusting this posterior", RuntimeWarning, stacklevel=2)
        if warn and out["divergences"]:
            warnings.warn(f"{self.model}/{self.method}: {out['divergences']} divergent transitions; raise "
                          "target_accept_prob or reparameterise", RuntimeWarning, stacklevel=2)
        return out


@dataclass
class Posterior(DrawDiagnostics):
    """Posterior over the true labels of ``N`` items given ``M`` weak models.

    Attributes:
        item_probs: ``[N, K]`` posterior probability of each item's true class (averaged
            over posterior draws of the globals when the method gives draws).
        confusion: ``[M, K, K]`` posterior mean (MAP for EM / delta SVI) of each weak model's
            confusion; row ``k`` is P(weak label | true class ``k``). For the soft-label
            model, row ``k`` is the mean predicted distribution given true class ``k``.
        confusion_sd: ``[M, K, K]`` its posterior standard deviation, or ``None`` (point fits).
        class_prior: ``[K]`` the class prior π.
        model_names, label_names, item_ids: axis labels.
        model: posterior model name; method: inference method (em | svi | nuts).
        history: per-iteration log joint (EM) or ELBO loss (SVI).
        draws: global sites as ``[chains, draws, ...]`` in the model's own layout.
        log_lik: ``[chains, draws, N]`` log p(y_n | globals), the class summed out (for LOO).
        true_class: ``[chains, draws, N]`` item labels drawn by ``infer_discrete`` (NUTS).
        sample_stats: e.g. ``diverging`` ``[chains, draws]`` (NUTS).
        observed: the observation tensor the model saw (vote counts or clipped probabilities).
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
    confusion_sd: np.ndarray | None = None
    draws: dict = field(default_factory=dict)
    log_lik: np.ndarray | None = None
    true_class: np.ndarray | None = None
    sample_stats: dict = field(default_factory=dict)
    observed: np.ndarray | None = None
    info: dict = field(default_factory=dict)

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

    # -- ArviZ --------------------------------------------------------------------------
    def to_inference_data(self):
        """An ``arviz.InferenceData``: posterior (globals, item-label posterior), log_likelihood,
        observed_data and sample_stats, with dims named after weak models and classes."""
        import arviz as az

        classes = [str(c) for c in self.label_names]
        coords = {"weak_model": list(self.model_names), "true_class": classes, "weak_label": classes,
                  "class": classes, "item": np.arange(len(self.item_probs))}
        posterior, dims = {}, {}
        for name, value in self.draws.items():
            if name == "mu":         # [C, D, K, 1, K] population confusion
                posterior[name] = value[:, :, :, 0, :]
                dims[name] = ["true_class", "weak_label"]
            elif value.ndim == 5:    # [C, D, K, M, K] model layout -> [C, D, M, K, K]
                posterior[name] = value.transpose(0, 1, 3, 2, 4)
                dims[name] = ["weak_model", "true_class", "weak_label"]
            elif name == "accuracy":
                posterior[name], dims[name] = value, ["weak_model"]
            elif name == "pi":
                posterior[name], dims[name] = value, ["class"]
            else:
                posterior[name] = value
        chains, n_draws = self.log_lik.shape[:2]
        if self.true_class is not None:
            posterior["true_class_draw"], dims["true_class_draw"] = self.true_class, ["item"]
        # the exact item posterior, per draw would be [C, D, N, K]; its mean is enough here
        posterior["item_prob"] = np.broadcast_to(self.item_probs, (chains, n_draws) + self.item_probs.shape)
        dims["item_prob"] = ["item", "class"]
        obs_dims = ["item", "weak_model", "weak_label"]
        observed = {"y": self.observed} if self.observed is not None else None
        sample_stats = dict(self.sample_stats)
        return az.from_dict(posterior=posterior, log_likelihood={"y": self.log_lik}, observed_data=observed,
                            sample_stats=sample_stats or None, coords=coords,
                            dims={**dims, "y": obs_dims},
                            attrs={"model": self.model, "method": self.method, "inference_library": "pyro"})

    def __repr__(self) -> str:
        return (f"Posterior(model={self.model!r}, method={self.method!r}, N={len(self.item_probs)}, "
                f"M={len(self.model_names)}, K={len(self.label_names)})")
