"""bayes_w2s — Bayesian WeakS-to-Strong generalisation.

Pipeline: ``tasks → weak → posterior → student → metrics → report``.

>>> from bayes_w2s import load_task, WeakEnsemble, fit_posterior, train_student  # doctest: +SKIP
"""
from .posterior import Posterior, fit_posterior
from .student import Student, TrainConfig, train_student
from .tasks import Task, load_task
from .weak import WeakEnsemble, WeakLabels

__version__ = "0.1.0"
__all__ = ["load_task", "Task", "WeakEnsemble", "WeakLabels", "fit_posterior", "Posterior",
           "train_student", "Student", "TrainConfig", "__version__"]
