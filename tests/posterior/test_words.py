"""Word-level reliability posteriors on simulated weak hypotheses."""
import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from bayes_w2s.align import WordScores
from bayes_w2s.errors import InvalidInputError, UnknownNameError
from bayes_w2s.posterior import WordPosterior, fit_posterior, slot_table
from bayes_w2s.posterior import MODELS

WORD_MODELS = sorted(n for n, m in MODELS.items() if m.observes == "words")


def simulate_hypotheses(n=300, reliabilities=(0.9, 0.75, 0.6, 0.5), vocab=30, seed=0):
    """Each weak model keeps a true word with probability r, else substitutes a random
    word (70%) or drops it; kept words get higher log-probs than substituted ones."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    truth, hypotheses = [], []
    for _ in range(n):
        t = list(rng.choice(words, size=rng.integers(2, 9)))
        truth.append(" ".join(t))
        item = []
        for r in reliabilities:
            out, lps = [], []
            for w in t:
                u = rng.random()
                if u < r:
                    out.append(w)
                    lps.append(np.log(rng.uniform(0.5, 1.0)))
                elif u < r + (1 - r) * 0.7:
                    out.append(str(rng.choice(words)))
                    lps.append(np.log(rng.uniform(0.05, 0.7)))
            item.append(WordScores(out, np.array(lps)))
        hypotheses.append(item)
    return truth, hypotheses


@pytest.fixture(scope="module")
def simulated():
    return simulate_hypotheses()


def _exact(post, truth):
    return float(np.mean([c == t for c, t in zip(post.consensus, truth)]))


def test_em_recovers_reliability_order_and_informative_confidence_helps(simulated):
    truth, hyps = simulated
    plain = fit_posterior(hyps, model="word_reliability", method="em")
    assert isinstance(plain, WordPosterior) and plain.converged
    assert np.all(np.diff(plain.reliability) < 0)                 # 0.9 > 0.75 > 0.6 > 0.5
    assert abs(plain.reliability[0] - 0.9) < 0.03
    assert np.all(np.diff(plain.history) > -1e-8)                 # EM never decreases the log joint
    conf = fit_posterior(hyps, model="word_reliability_conf", method="em")
    best_weak = max(np.mean([" ".join(h[m].words) == t for h, t in zip(hyps, truth)]) for m in range(4))
    assert _exact(plain, truth) > best_weak + 0.05                # 75% vs 64% when written
    assert _exact(conf, truth) > _exact(plain, truth) + 0.03 and _exact(conf, truth) > best_weak + 0.1
    assert np.all(conf.draws["slope"] > 0)                        # confident words are right more often
    # sequence confidence is calibrated-ish: right consensus sequences are the confident ones
    right = np.array([c == t for c, t in zip(conf.consensus, truth)])
    assert conf.sequence_confidence[right].mean() > conf.sequence_confidence[~right].mean() + 0.2
    slots = conf.word_posteriors(0)
    assert all(abs(sum(s.values()) - 1) < 1e-9 for s in slots)


@pytest.mark.parametrize("model", WORD_MODELS)
def test_the_most_reliable_model_leads_not_a_dictator(model):
    """Regression: with errors spread over the slot's observed candidates, the least
    reliable of three models won the likelihood and every other model was explained
    against its words. With the vocabulary-wide noise distribution the order is right."""
    truth, hyps = simulate_hypotheses(n=200, reliabilities=(0.85, 0.35, 0.15), seed=0)
    post = fit_posterior(hyps, model=model, method="em")
    assert np.argmax(post.reliability) == 0 and np.argmin(post.reliability) == 2
    assert abs(post.reliability[1] - 0.35) < 0.05 and abs(post.reliability[2] - 0.15) < 0.05
    assert _exact(post, truth) >= np.mean([" ".join(h[0].words) == t for h, t in zip(hyps, truth)])


def test_em_restarts_keep_the_best_start(simulated):
    _, hyps = simulated
    table = slot_table(hyps[:150])
    one = fit_posterior(table, model="word_reliability", method="em", restarts=False)
    many = fit_posterior(table, model="word_reliability", method="em")
    finals = many.info["start_log_joints"]
    assert len(finals) == 1 + 4 and finals[0] == pytest.approx(one.history[-1])
    assert many.history[-1] == max(finals) >= one.history[-1]


@pytest.mark.parametrize("model", WORD_MODELS)
def test_svi_map_equals_em(simulated, model):
    _, hyps = simulated
    em = fit_posterior(hyps[:150], model=model, method="em")
    svi = fit_posterior(hyps[:150], model=model, method="svi", steps=300, progress=False)
    for site in MODELS[model].sites:
        np.testing.assert_allclose(svi.draws[site], em.draws[site], atol=5e-3)


def test_nuts_arviz_and_loo(simulated):
    import arviz as az
    truth, hyps = simulated
    post = fit_posterior(hyps[:200], model="word_reliability", method="nuts", num_chains=2, num_samples=150,
                         warmup_steps=150, progress=False)
    diag = post.diagnostics(warn=False)
    assert diag["max_rhat"] < 1.05 and diag["divergences"] == 0
    idata = post.to_inference_data()
    assert idata.posterior["reliability"].dims == ("chain", "draw", "weak_model")
    assert idata.log_likelihood["y"].shape == (2, 150, 200)
    assert post.reliability_sd is not None and np.all(post.reliability_sd > 0)
    assert np.isfinite(az.loo(idata).elpd_loo)


@pytest.mark.parametrize("model", ["word_reliability", "word_reliability_conf"])
def test_word_models_sample_by_static_hmc(simulated, model):
    _, hyps = simulated
    post = fit_posterior(hyps[:100], model=model, method="hmc", num_chains=1, num_samples=20, warmup_steps=20,
                         num_workers=1, progress=False)
    assert post.info["kernel"] == "hmc" and all(np.isfinite(v).all() for v in post.draws.values())


def test_empty_hypotheses_and_items_without_slots():
    hyps = [[WordScores([], np.array([])), "a b"], ["", ""], ["x", "x"]]
    post = fit_posterior(hyps, model="word_reliability", method="em")
    assert post.consensus[1] == "" and post.sequence_confidence[1] == 0.0
    assert post.consensus[2] == "x"


def test_errors_name_the_problem(simulated):
    _, hyps = simulated
    with pytest.raises(InvalidInputError, match="at least 2 weak models"):
        fit_posterior([["a"]], model="word_reliability")
    with pytest.raises(InvalidInputError, match="item 1 has 1 hypotheses, expected 2"):
        fit_posterior([["a", "b"], ["a"]], model="word_reliability")
    with pytest.raises(InvalidInputError, match="a string, a list of words or WordScores"):
        fit_posterior([["a", 3]], model="word_reliability")
    with pytest.raises(InvalidInputError, match="has no prior or em setting"):
        fit_posterior(hyps[:5], model="word_reliability", method="em", beta_diag=2.0)
    with pytest.raises(UnknownNameError, match="no method 'gibbs'"):
        fit_posterior(hyps[:5], model="word_reliability", method="gibbs")
    with pytest.raises(InvalidInputError, match="no items"):
        fit_posterior([], model="word_reliability")
    import pandas as pd   # both were read character by character, into a silent garbage consensus
    with pytest.raises(InvalidInputError, match="item 0 must be a list of M hypotheses"):
        fit_posterior(["wake me", "play me"], model="word_reliability")
    with pytest.raises(InvalidInputError, match="got DataFrame"):
        fit_posterior(pd.DataFrame({"m1": ["a b", "c"], "m2": ["a", "c"]}), model="word_reliability")
    with pytest.raises(InvalidInputError, match="model_names must be distinct"):
        fit_posterior([["a b", "a c"], ["d", "d"]], model="word_reliability", model_names=["x", "x"])
    assert fit_posterior([["a b", "a c"], ["d", "d"]], model="word_reliability",
                         model_names=np.array(["x", "y"])).model_names == ["x", "y"]   # was "truth value ambiguous"


def test_constrained_consensus_falls_back_to_the_best_valid_hypothesis():
    """Word voting can glue pieces of different structured targets together; with a
    validity check the item's consensus is the most probable weak hypothesis that passes."""
    from bayes_w2s.tasks.generation import is_well_formed
    good, other = '{"time": "five am"}', '{"date": "today"}'
    hyps = [[good, good, other]] * 30 + [['{"time": "five', '{"time": "five', '{"time": "nine am"}']] + \
           [[other, other, good]] * 30
    post = fit_posterior(hyps, model="word_reliability", method="em")
    assert post.consensus[30] == '{"time": "five'                 # two votes for ε beat 'am"}'
    fixed = post.constrain(is_well_formed)
    assert all(is_well_formed(c) for c in fixed.consensus)
    assert fixed.consensus[30] == '{"time": "nine am"}'           # the only well-formed hypothesis
    path = fixed.target_path()
    assert " ".join(w for w in fixed.target_words(30, path) if w) == fixed.consensus[30]
    assert fixed.consensus[:30] == post.consensus[:30] == [good] * 30
    assert 0 < fixed.sequence_confidence[30] < post.sequence_confidence[30]


@pytest.mark.parametrize("method", ["em", "svi"])
def test_all_empty_hypotheses_are_a_clear_error(method):
    with pytest.raises(InvalidInputError, match="no words to fit: the hypotheses of all 2 items are empty"):
        fit_posterior([["", ""], ["", ""]], model="word_reliability", method=method)


def test_item_positions_and_ids_are_checked():
    post = fit_posterior([["a b", "a c"], ["x", "y"]], model="word_reliability")
    for bad in (2, -1, 1.0):
        with pytest.raises(InvalidInputError, match="is not an item position in \\[0, 2\\)"):
            post.word_posteriors(bad)
    with pytest.raises(InvalidInputError, match="1 item_ids for 2 items"):
        fit_posterior([["a b", "a c"], ["x", "y"]], model="word_reliability", item_ids=["only"])


def test_items_the_constraint_cannot_fix_are_warned_about():
    post = fit_posterior([["a b", "a b"], ["", ""], ["c", "d"]], model="word_reliability")
    with pytest.warns(RuntimeWarning, match="1 of 3 items have no consensus"):
        post.constrain(lambda text: bool(text)).target_path()
