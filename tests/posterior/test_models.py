"""The Pyro model functions and the closed-form densities EM/NUTS use must agree."""
import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from bayes_w2s.posterior import MODELS, as_label_matrix
from bayes_w2s.posterior.inference import (_latent_sites, _init_values, item_log_lik, log_density, make_potential,
                                           model_data, model_priors, to_constrained, to_unconstrained)
from bayes_w2s.posterior.models import VoteCounts

from .conftest import simulate_soft, simulate_votes


def _random_point(model, lm, data, seed=0):
    """A point away from the MAP: the EM-based start, perturbed in unconstrained space."""
    gen = torch.Generator().manual_seed(seed)
    init = _init_values(lm, model, 1e-4)
    return {s: to_constrained(s, to_unconstrained(s, v) + 0.3 * torch.randn(to_unconstrained(s, v).shape, generator=gen,
                                                                            dtype=v.dtype))[0]
            for s, v in init.items() if s in _latent_sites(model)}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_closed_form_log_density_matches_pyro_trace(model):
    """−ELBO of the model conditioned on the globals (true class enumerated) = our log joint."""
    if model == "soft":
        _, labels = simulate_soft(n=200)
    else:
        _, votes = simulate_votes(n=200, k=3, accs=(0.6, 0.7, 0.8))
        votes[::7, 1] = -1                                             # abstentions
        labels = votes
    lm = as_label_matrix(labels, num_classes=3)
    data = model_data(lm, model)
    g = _random_point(model, lm, data)
    ours = log_density(model, data, torch.ones(len(data), dtype=data.dtype), g,
                       {s: v.log() for s, v in g.items()}, model_priors(model, {}))
    conditioned = poutine.condition(MODELS[model][0], data=g)
    pyro_value = -TraceEnum_ELBO(max_plate_nesting=2).loss(conditioned, lambda *a, **k: None, data)
    assert float(ours) == pytest.approx(float(pyro_value), rel=1e-9, abs=1e-6)


def test_pattern_compression_preserves_the_density():
    _, votes = simulate_votes(n=500, k=4)
    lm = as_label_matrix(votes)
    data = model_data(lm, "dawid_skene")
    from bayes_w2s.posterior.inference import _compress
    patterns, inverse, weight = _compress(data)
    assert len(patterns) < len(data) and torch.equal(patterns[inverse], data) and weight.sum() == len(data)
    pot_full = make_potential("dawid_skene", data, torch.ones(len(data), dtype=data.dtype), {})
    pot_comp = make_potential("dawid_skene", patterns, weight, {})
    g = _random_point("dawid_skene", lm, data)
    u = {s: to_unconstrained(s, v) for s, v in g.items()}
    assert float(pot_full(u)) == pytest.approx(float(pot_comp(u)), rel=1e-10)


def test_vote_counts_log_prob_is_the_multinomial():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=torch.float64)
    counts = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    got = VoteCounts(probs.log()).log_prob(counts)
    expected0 = float(torch.distributions.Multinomial(3, probs=probs[0]).log_prob(counts[0]))
    assert got[0].item() == pytest.approx(expected0) and got[1].item() == 0.0   # abstention adds nothing


def test_item_log_lik_one_coin_layout():
    acc = torch.tensor([0.9, 0.6], dtype=torch.float64)
    votes = np.array([[0, 1], [2, 2]])
    lm = as_label_matrix(votes, num_classes=3)
    ll = item_log_lik("one_coin", model_data(lm, "one_coin"), {"accuracy": acc})
    # item 0, true class 0: model 0 right (0.9), model 1 wrong ((1-0.6)/2)
    assert ll[0, 0].item() == pytest.approx(np.log(0.9) + np.log(0.2))
    assert ll[1, 2].item() == pytest.approx(np.log(0.9) + np.log(0.6))


def test_unknown_prior_name_is_reported():
    from bayes_w2s.errors import InvalidInputError
    with pytest.raises(InvalidInputError, match="unknown prior setting"):
        model_priors("dawid_skene", {"beta_diagonal": 3.0})
    pyro.clear_param_store()
