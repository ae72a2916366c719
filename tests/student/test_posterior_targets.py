import numpy as np
import pytest

from bayes_w2s import WeakLabels
from bayes_w2s.config import MethodConfig
from bayes_w2s.posterior.selection import parse_candidate
from bayes_w2s.student.posterior_targets import GoldSlice, posterior_targets

from ..posterior.conftest import simulate_votes


def soft_labels(n, seed=0, prefix="i"):
    truth, votes = simulate_votes(n=n, k=3, accs=(0.6, 0.7, 0.8), seed=seed)
    rng = np.random.default_rng(seed)
    probs = 0.1 + 0.7 * np.eye(3)[votes] + 0.2 * rng.random((n, 3, 3))
    return truth, WeakLabels(probs / probs.sum(-1, keepdims=True), ["a", "b", "c"], ["x", "y", "z"],
                             [f"{prefix}{i}" for i in range(n)])


@pytest.mark.parametrize("candidates", [["one_coin:soft_votes=3", "dawid_skene"], ["dawid_skene", "one_coin@vb"]])
def test_auto_targets_are_the_chosen_model_with_its_settings_fitted_with_gold(candidates):
    truth, labels = soft_labels(500)
    gold_truth, gold_labels = soft_labels(60, seed=1, prefix="gold")
    method = MethodConfig(name="auto", targets="posterior:auto", gold="observe", temperature="gold",
                          posterior_candidates=candidates)
    post = posterior_targets(method, labels, GoldSlice(gold_labels, gold_truth), None)
    chosen = post.info["posterior_chosen"]
    model, fit_method, settings = parse_candidate(chosen)
    assert chosen in candidates and post.model == model and post.method == (fit_method or "em")
    assert post.info.get("data_settings", {}) == settings
    assert post.info["gold_items"] == 60 and post.item_probs.shape == (500, 3)   # the gold items observed, then cut
    assert post.info["temperature_chosen"] == pytest.approx(post.info["posterior_choice"].loc[chosen, "temperature"],
                                                            rel=0.05)


def test_rows_that_ask_the_same_question_share_one_choice(monkeypatch):
    import bayes_w2s.student.posterior_targets as module
    calls = []
    real = module.choose_model
    monkeypatch.setattr(module, "choose_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    truth, labels = soft_labels(300)
    gold_truth, gold_labels = soft_labels(40, seed=1, prefix="gold")
    gold = GoldSlice(gold_labels, gold_truth)
    rows = [MethodConfig(name=n, targets="posterior:auto", gold="observe", temperature="gold", loss=loss,
                         posterior_candidates=["dawid_skene", "one_coin"]) for n, loss in [("a", "xent"), ("b", "edl")]]
    first, second = (posterior_targets(m, labels, gold, None) for m in rows)
    np.testing.assert_array_equal(first.item_probs, second.item_probs)
    other_gold = GoldSlice(gold_labels, (gold_truth + 1) % 3)
    posterior_targets(rows[0], labels, other_gold, None)
    assert len(calls) == 2   # the same labels and gold once, other gold classes again
