"""Each loss against a batch computed by hand."""
import math

import numpy as np
import pytest
import torch

from bayes_w2s.errors import InvalidInputError, UnknownNameError
from bayes_w2s.student.losses import (AuxConfidence, Evidential, MultiWeak, dirichlet_kl_to_uniform, get_loss,
                                      weighted_xent, xent)

LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
# softmax rows: [e²/(e²+1), 1/(e²+1)] and [1/(1+e), e/(1+e)]
P = [[math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)], [1 / (1 + math.e), math.e / (1 + math.e)]]


def test_xent_soft_targets():
    y = torch.tensor([[0.75, 0.25], [0.0, 1.0]])
    expected = (-(0.75 * math.log(P[0][0]) + 0.25 * math.log(P[0][1])) - math.log(P[1][1])) / 2
    assert xent(LOGITS, {"target_probs": y}).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_xent_normalises_by_weight_sum():
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    w = torch.tensor([0.9, 0.3])
    expected = (0.9 * -math.log(P[0][0]) + 0.3 * -math.log(P[1][0])) / 1.2
    assert weighted_xent(LOGITS, {"target_probs": y, "weight": w}).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InvalidInputError, match="weights"):
        weighted_xent(LOGITS, {"target_probs": y})


def test_aux_confidence_warms_up():
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]])    # weak labels disagree with the student's argmax
    loss = AuxConfidence(alpha_max=0.5, warmup=0.2)
    ce_weak = (-math.log(P[0][1]) - math.log(P[1][0])) / 2
    ce_self = (-math.log(P[0][0]) - math.log(P[1][1])) / 2
    assert loss(LOGITS, {"target_probs": y}, progress=0.0).item() == pytest.approx(ce_weak, rel=1e-6)
    halfway = 0.25                                 # α = 0.5 · 0.1/0.2
    assert loss(LOGITS, {"target_probs": y}, progress=0.1).item() == pytest.approx(
        (1 - halfway) * ce_weak + halfway * ce_self, rel=1e-6)
    assert loss(LOGITS, {"target_probs": y}, progress=0.9).item() == pytest.approx(
        0.5 * ce_weak + 0.5 * ce_self, rel=1e-6)


def test_multi_weak_one_term_per_weak_model():
    weak = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.4, 0.6], [0.3, 0.7]]])  # [B=2, M=2, K=2]
    loss = MultiWeak(lambdas=[0.25, 0.75])
    # hard votes: item 0 → (0, 1), item 1 → (1, 1)
    expected = ((0.25 * -math.log(P[0][0]) + 0.75 * -math.log(P[0][1]))
                + (0.25 * -math.log(P[1][1]) + 0.75 * -math.log(P[1][1]))) / 2
    assert loss(LOGITS, {"weak_probs": weak}).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InvalidInputError, match="weak"):
        loss(LOGITS, {"target_probs": weak[:, 0]})
    same = MultiWeak(lambdas=[np.int64(1), np.float32(3)])        # relative weights, numpy scalars too
    assert same(LOGITS, {"weak_probs": weak}).item() == pytest.approx(expected, rel=1e-6)
    tied = torch.tensor([[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]])   # a tie was a vote for class 0
    split = -(0.5 * torch.log_softmax(LOGITS, -1)).sum(-1).mean()
    assert MultiWeak()(LOGITS, {"weak_probs": tied}).item() == pytest.approx(split.item(), rel=1e-6)


def test_dirichlet_kl_closed_form():
    # KL(Dir(1,1) ‖ Dir(1,1)) = 0; KL(Dir(2,1) ‖ Dir(1,1)) = log 2 − 1/2 (by hand from the formula)
    kl = dirichlet_kl_to_uniform(torch.tensor([[1.0, 1.0], [2.0, 1.0]]))
    assert kl[0].item() == pytest.approx(0.0, abs=1e-6)
    assert kl[1].item() == pytest.approx(math.log(2) - 0.5, rel=1e-6)
    ref = torch.distributions.kl_divergence(torch.distributions.Dirichlet(torch.tensor([3.0, 1.5, 0.7])),
                                            torch.distributions.Dirichlet(torch.ones(3)))
    assert dirichlet_kl_to_uniform(torch.tensor([[3.0, 1.5, 0.7]]))[0].item() == pytest.approx(ref.item(), rel=1e-5)


def test_evidential_loss_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0]])   # evidence (3, 1) → α = (4, 2), S = 6
    y = torch.tensor([[1.0, 0.0]])
    edl = Evidential(kl_max=1.0, anneal=0.5)
    fit = math.log(6) - math.log(4)
    # α̃ = (α − 1)(1 − y) + 1 = (1, 2);  KL(Dir(1,2) ‖ Dir(1,1)) = log 2 − 1/2
    assert edl(logits, {"target_probs": y}, progress=0.0).item() == pytest.approx(fit, rel=1e-6)
    assert edl(logits, {"target_probs": y}, progress=0.25).item() == pytest.approx(fit + 0.5 * (math.log(2) - 0.5), rel=1e-6)
    assert edl(logits, {"target_probs": y}, progress=1.0).item() == pytest.approx(fit + math.log(2) - 0.5, rel=1e-6)
    assert edl.predict_proba(logits)[0].tolist() == pytest.approx([4 / 6, 2 / 6])


def test_evidential_survives_huge_logits():
    logits = torch.tensor([[1e4, -1e4]], requires_grad=True)
    loss = Evidential()(logits, {"target_probs": torch.tensor([[1.0, 0.0]])}, 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_unknown_loss():
    with pytest.raises(UnknownNameError, match="unknown loss 'focal'"):
        get_loss("focal")


@pytest.mark.parametrize("name, kwargs, match", [
    ("xent", {"alpha_max": 0.5}, r"loss 'xent' has no setting\(s\) \['alpha_max'\].*it takes none"),
    ("weighted_xent", {"warmup": 0.1}, r"loss 'weighted_xent' has no setting"),
    ("aux_conf", {"alpha_max": -3}, r"aux_conf: alpha_max must be a number in \[0, 1\], got -3"),
    ("aux_conf", {"alpha_max": 1.5}, "alpha_max must be a number in"),
    ("aux_conf", {"warmup": -0.1}, "warmup must be a number in"),
    ("multi_weak", {"lambdas": [0.0, 0.0]}, "lambdas must not all be zero"),
    ("multi_weak", {"lambdas": [1.0, -1.0]}, "lambdas must be a number in"),
    ("multi_weak", {"lambdas": "0.5,0.5"}, "lambdas must be a list"),
    ("edl", {"kl_max": -1}, "kl_max must be a number in"),
    ("edl", {"max_logit": 0}, r"max_logit must be a number in \(0, 80\]"),
    ("edl", {"temperature": 2}, r"loss 'edl' has no setting\(s\) \['temperature'\]"),
])
def test_bad_loss_settings_name_the_setting(name, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        get_loss(name, **kwargs)
