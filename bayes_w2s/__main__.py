"""``python -m bayes_w2s``: the ``bayes-w2s`` command line."""
import sys

from .cli import main

sys.exit(main())
