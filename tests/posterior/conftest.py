import numpy as np
import pytest

from bayes_w2s import WeakLabels


def simulate_votes(n=2000, accs=(0.55, 0.6, 0.7, 0.75, 0.8), k=4, seed=0):
    """Hard votes of weak models with the given accuracies; errors uniform over wrong classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    votes = np.empty((n, len(accs)), dtype=int)
    for m, a in enumerate(accs):
        right = rng.random(n) < a
        votes[:, m] = np.where(right, truth, (truth + rng.integers(1, k, n)) % k)
    return truth, votes


def simulate_soft(n=1500, k=3, seed=0, strengths=(1.2, 1.6, 2.4), temps=(1.0, 2.0, 0.5)):
    """Soft labels whose confidence carries information: logit bump on the true class."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    probs = []
    for strength, temp in zip(strengths, temps):
        logits = rng.normal(0, 1, (n, k))
        logits[np.arange(n), truth] += strength
        p = np.exp(logits / temp)
        probs.append(p / p.sum(1, keepdims=True))
    return truth, WeakLabels(np.stack(probs, 1), [f"w{i}" for i in range(len(temps))], [f"c{i}" for i in range(k)])


@pytest.fixture(scope="session")
def votes_2000x5():
    return simulate_votes()
