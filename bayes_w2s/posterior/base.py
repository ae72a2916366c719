"""The fitted :class:`Posterior` returned by every model and inference method."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InvalidInputError

#: R-hat above this is reported as not converged (Vehtari et al., 2021)
RHAT_MAX = 1.01


def iid_rhat_floor(chains: int, draws: int, entries: int, seed: int = 0) -> float:
    """The largest rank-normalised R-hat over ``entries`` quantities when every draw is
    independent: where the maximum sits from sampling noise alone, however good the sampler.

    It grows with the number of entries and shrinks with the draws (≈ 1.006 for 4 chains ×
    500 draws of 1,604 entries, ≈ 1.003 for 4 × 1,000), so a maximum just above 1.01 over
    thousands of entries can mean "too few draws" rather than "chains disagree". Simulated
    once from seeded standard normals (R-hat is rank-based: the marginals do not matter),
    in blocks of entries to bound memory.
    """
    import arviz as az
    for name, value, low in (("chains", chains, 2), ("draws", draws, 4), ("entries", entries, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidInputError(f"iid_rhat_floor: {name} must be an integer ≥ {low}, got {value!r}")
    rng = np.random.default_rng(seed)
    block = max(1, 4_000_000 // (chains * draws))
    largest = 1.0
    for start in range(0, entries, block):
        x = rng.standard_normal((chains, draws, min(block, entries - start)))
        largest = max(largest, float(az.rhat(az.convert_to_dataset({"x": x}))["x"].values.max()))
    return largest


class DrawDiagnostics:
    """Convergence checks shared by every fitted posterior that has ``draws``, ``log_lik``
    ``[chains, draws, items]``, ``sample_stats``, ``history``, ``converged``, ``model``,
    ``method`` and a ``to_inference_data()``."""

    def _draw_shape(self) -> tuple[int, int]:
        """``(chains, draws)`` of the global sites (every site is ``[chains, draws, ...]``)."""
        first = next(iter(self.draws.values()), None)
        return (0, 0) if first is None else tuple(first.shape[:2])

    @property
    def num_draws(self) -> int:
        chains, draws = self._draw_shape()
        return chains * draws

    def diagnostics(self, warn: bool = True) -> dict:
        """Max R-hat and min bulk ESS over the global sites, divergences; EM/SVI report their
        iterations instead (R-hat needs several chains). Warns when R-hat > 1.01 or any
        transition diverged; R-hat's warning also gives ``iid_rhat_floor``, the max R-hat that
        independent draws of this size would reach over as many entries (:func:`iid_rhat_floor`;
        a few seconds for thousands of entries, so NaN when R-hat is within 1.01)."""
        out = {"model": self.model, "method": self.method, "iterations": len(self.history),
               "converged": self.converged, "max_rhat": float("nan"), "min_ess_bulk": float("nan"),
               "iid_rhat_floor": float("nan"),
               "divergences": int(self.sample_stats["diverging"].sum()) if "diverging" in self.sample_stats else 0}
        chains, per_chain = self._draw_shape()
        if chains >= 2 and per_chain >= 4:     # split R-hat halves each chain
            import arviz as az

            idata = self.to_inference_data()
            from .models import MODELS
            # a model with exchangeable sites (EBCC's subtypes) is diagnosed on what it identifies
            identified = getattr(MODELS.get(self.model), "identified_sites", None)
            names = [n for n in self.draws if n in idata.posterior and n != "item_prob"
                     and (identified is None or n in identified)]
            with np.errstate(invalid="ignore", divide="ignore"):   # constant entries: NaN, handled below
                rhat = az.rhat(idata, var_names=names)
                ess = az.ess(idata, var_names=names, method="bulk")
            rhats, ess_bulk = [], []
            for n in names:
                draws = idata.posterior[n].values
                moved = draws.max(axis=(0, 1)) > draws.min(axis=(0, 1))   # not fixed by construction
                r = rhat[n].values                                       # (a Cholesky factor's 0s and 1s)
                # R-hat is NaN where draws differ but a chain never moved: not converged
                rhats.append(np.where(np.isnan(r), np.inf, r)[moved])
                ess_bulk.append(ess[n].values[moved])
            values = np.concatenate(rhats)
            entries = values.size
            if entries:
                out["max_rhat"] = float(values.max())
                out["min_ess_bulk"] = float(np.nanmin(np.concatenate(ess_bulk), initial=np.inf))
                out["converged"] = out["max_rhat"] <= RHAT_MAX
            if not out["converged"] and entries:
                out["iid_rhat_floor"] = iid_rhat_floor(chains, per_chain, entries)
                if warn:
                    warnings.warn(f"{self.model}/{self.method}: max R-hat {out['max_rhat']:.4f} > {RHAT_MAX} "
                                  f"(independent draws of this size would reach {out['iid_rhat_floor']:.4f} over "
                                  f"these {entries} entries); run longer chains before trusting this posterior",
                                  RuntimeWarning, stacklevel=2)
        if warn and out["divergences"]:
            warnings.warn(f"{self.model}/{self.method}: {out['divergences']} divergent transitions; raise "
                          "target_accept_prob or reparameterise", RuntimeWarning, stacklevel=2)
        return out


def _item_coords(item_ids, n: int):
    """Item ids as the ArviZ ``item`` coordinate when they are unique, else positions."""
    if item_ids is not None and len(set(map(str, item_ids))) == n:
        return [str(i) for i in item_ids]
    return np.arange(n)


def _site_dims(value: np.ndarray, dims: tuple) -> tuple[np.ndarray, list]:
    """A draw array in the model's layout → ArviZ layout: the singleton axes the layout
    names ``"_"`` (plate placeholders) dropped, and ``weak_model`` first, for reading."""
    squeeze = tuple(2 + i for i, d in enumerate(dims) if d == "_")
    value = np.squeeze(value, axis=squeeze) if squeeze else value
    dims = [d for d in dims if d != "_"]
    if "weak_model" in dims[1:]:
        j = dims.index("weak_model")
        value = np.moveaxis(value, 2 + j, 2)
        dims = ["weak_model"] + dims[:j] + dims[j + 1:]
    return value, dims


@dataclass
class Posterior(DrawDiagnostics):
    """Posterior over the true labels of ``N`` items given ``M`` weak models.

    Attributes:
        item_probs: ``[N, K]`` posterior probability of each item's true class (averaged
            over posterior draws of the globals when the method gives draws; VB: q(c)).
        confusion: ``[M, K, K]`` posterior mean (MAP for EM / delta SVI) of each weak model's
            confusion; row ``k`` is P(weak label | true class ``k``). For the soft-label
            models, row ``k`` is the mean predicted distribution (``soft``) or the
            distribution of the weak model's argmax (``logistic_t``, ``logistic_t_hetero``,
            ``logistic_t_pooled``, ``logistic_t_anchored``) given class ``k``.
        confusion_sd: ``[M, K, K]`` its posterior standard deviation, or ``None`` (point fits).
        class_prior: ``[K]`` the class prior π.
        model_names, label_names, item_ids: axis labels.
        model: posterior model name; method: inference method (em | vb | svi | nuts | hmc).
        history: per-iteration log joint (EM), ELBO (VB) or ELBO loss (SVI).
        draws: global sites as ``[chains, draws, ...]`` in the model's own layout.
        log_lik: ``[chains, draws, N]`` log p(y_n | globals), the class summed out (for LOO);
            a property, expanded on access from ``log_lik_rows`` ``[chains, draws, R]`` (one
            column per distinct vote pattern) and ``row_of_item`` ``[N]`` — with 200 VB
            draws of a million items the expanded array is 1.6 GB, so it is never built
            unless asked for.
        true_class: ``[chains, draws, N]`` item labels drawn from their conditional per draw (NUTS, HMC).
        sample_stats: e.g. ``diverging`` and ``tree_size`` (leapfrog steps) ``[chains, draws]`` (NUTS, HMC).
        observed: the observation tensor the model saw (vote counts, probabilities, log-odds).
        priors: the prior settings fitted with; temperature: the likelihood's temperature.
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
    log_lik_rows: np.ndarray | None = None
    row_of_item: np.ndarray | None = None
    true_class: np.ndarray | None = None
    sample_stats: dict = field(default_factory=dict)
    observed: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    priors: dict = field(default_factory=dict)
    temperature: float = 1.0

    @property
    def log_lik(self) -> np.ndarray | None:
        if self.log_lik_rows is None or self.row_of_item is None:
            return self.log_lik_rows
        return self.log_lik_rows[..., self.row_of_item]

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

    def select(self, items) -> "Posterior":
        """The same fit reported on a subset of its items (positions or a boolean mask),
        e.g. the training items of a fit that also saw gold items."""
        idx = np.arange(len(self.item_probs))[items]
        pick = (lambda a: None if a is None else a[..., idx])
        return replace(self, item_probs=self.item_probs[idx],
                       item_ids=None if self.item_ids is None else [self.item_ids[i] for i in idx],
                       log_lik_rows=self.log_lik_rows if self.row_of_item is not None else pick(self.log_lik_rows),
                       row_of_item=None if self.row_of_item is None else self.row_of_item[idx],
                       true_class=pick(self.true_class),
                       observed=None if self.observed is None else self.observed[idx])

    def to_frame(self):
        """``item_probs`` as a DataFrame indexed by item id (crowd-kit's ``probas_`` layout)."""
        import pandas as pd

        ids = self.item_ids if self.item_ids is not None else range(len(self.item_probs))
        index = pd.Index(ids, name="task", tupleize_cols=False)      # tuple task ids stay one level
        return pd.DataFrame(self.item_probs, index=index, columns=list(self.label_names))

    # -- new items --------------------------------------------------------------------
    def predict_proba(self, labels, gold=None, temperature: float | None = None) -> np.ndarray:
        """``[N', K]`` the posterior of new items' true classes under the fitted reliabilities,
        with no refit: the closed-form item posterior at every draw of the globals, averaged
        (VB: at the fitted factors' expected logs). ``labels`` come from the same weak models,
        in any layout ``fit_posterior`` takes; ``gold`` as there; ``temperature`` defaults to
        the fit's."""
        import torch

        from .engine import check_temperature
        from .inputs import as_label_matrix, gold_labels
        from .models import get_model

        model = get_model(self.model)
        lm = as_label_matrix(labels, num_classes=len(self.label_names), label_names=self.label_names, min_models=1,
                             allow_unlabelled=True)
        if lm.named and list(lm.model_names) != list(self.model_names):
            lm = self._in_fitted_order(lm, model.observes == "votes")
        if lm.counts.shape[1] != len(self.model_names):
            raise InvalidInputError(f"the posterior was fitted on {len(self.model_names)} weak models "
                                    f"{self.model_names}, the new labels have {lm.counts.shape[1]}")
        temperature = self.temperature if temperature is None else check_temperature(temperature)
        data = model.prepare(lm, self.priors, gold=gold_labels(gold, lm), fitting=False,
                             **self.info.get("data_settings", {}))
        draws = {s: torch.as_tensor(v) for s, v in self.draws.items()}
        concentration = self.info.get("concentration") if self.method == "vb" else None
        probs, _ = model.local_posterior(data, draws, self.priors, temperature, concentration)
        if data.inverse is not None:
            probs = probs[data.inverse]
        return probs.numpy()

    def _in_fitted_order(self, lm, votes: bool):
        """New labels whose weak models are the fitted ones in another order (votes and
        probabilities move together), or, for vote models, some of them: the rest abstain
        (crowd data, where a new task's labellers are a few of the fitted workers)."""
        fitted, given = list(map(str, self.model_names)), list(map(str, lm.model_names))
        unknown = sorted(set(given) - set(fitted))
        if unknown:
            raise InvalidInputError(f"new labels come from weak models {given}, the posterior from {fitted}: "
                                    f"{unknown} were not in the fitted data")
        missing = sorted(set(fitted) - set(given))
        if missing and not votes:
            raise InvalidInputError(f"the soft-label models need every fitted worker's probabilities; missing "
                                    f"{missing}")
        columns = [fitted.index(m) for m in given]
        counts = np.zeros((lm.counts.shape[0], len(fitted), lm.counts.shape[2]), dtype=lm.counts.dtype)
        counts[:, columns] = lm.counts
        soft = None
        if lm.soft is not None:    # a missing weak model's output is uniform: no soft vote either
            soft = np.full((lm.soft.shape[0], len(fitted), lm.soft.shape[2]), 1.0 / lm.soft.shape[2], lm.soft.dtype)
            soft[:, columns] = lm.soft
        return replace(lm, counts=counts, soft=soft, model_names=list(self.model_names))

    # -- ArviZ --------------------------------------------------------------------------
    def to_inference_data(self):
        """An ``arviz.InferenceData``: posterior (globals, item-label posterior), log_likelihood,
        observed_data and sample_stats, with dims named after weak models, classes and items."""
        import arviz as az

        from .models import get_model

        model = get_model(self.model)
        classes = [str(c) for c in self.label_names]
        items = _item_coords(self.item_ids, len(self.item_probs))
        coords = {"weak_model": list(self.model_names), "true_class": classes, "weak_label": classes,
                  "class": classes, "item": items}
        posterior, dims = {}, {}
        for name, value in self.draws.items():
            site_dims = model.sites[name].dims if name in model.sites else model.derived_dims.get(name)
            if site_dims is None:
                posterior[name] = value
                continue
            posterior[name], dims[name] = _site_dims(value, site_dims)
        chains, n_draws = self.log_lik.shape[:2]
        if self.true_class is not None:
            posterior["true_class_draw"], dims["true_class_draw"] = self.true_class, ["item"]
        # the exact item posterior, per draw would be [C, D, N, K]; its mean is enough here
        posterior["item_prob"] = np.broadcast_to(self.item_probs, (chains, n_draws) + self.item_probs.shape)
        dims["item_prob"] = ["item", "class"]
        observed = {"y": self.observed} if self.observed is not None else None
        if self.observed is not None and self.observed.shape[-1] != len(classes):
            coords["log_ratio"] = [f"{c}/{classes[-1]}" for c in classes[:-1]]
        if any("log_ratio_coord" in d for d in dims.values()):   # every weak model's log-odds, stacked model-major
            stacked = [f"{m}:{c}/{classes[-1]}" for m in self.model_names for c in classes[:-1]]
            coords["log_ratio_coord"] = coords["log_ratio_coord_"] = stacked
        return az.from_dict(posterior=posterior, log_likelihood={"y": self.log_lik}, observed_data=observed,
                            sample_stats=dict(self.sample_stats) or None, coords=coords,
                            dims={**dims, "y": ["item", *model.observed_dims]},
                            attrs={"model": self.model, "method": self.method, "inference_library": "pyro",
                                   "temperature": self.temperature})

    def __repr__(self) -> str:
        return (f"Posterior(model={self.model!r}, method={self.method!r}, N={len(self.item_probs)}, "
                f"M={len(self.model_names)}, K={len(self.label_names)})")
