"""Runs schemathesis's command line, with one bug of Hypothesis worked around.

Hypothesis 6.170.17 (what schemathesis 4.32.5 installs) can crash in its target phase:
`Optimiser.hill_climb` indexes a node of the current best test case after a replacement
made that case shorter (`IndexError: tuple index out of range` in optimiser.py). The crash
is the tool's, not a finding about the server, yet it fails the whole run. Here an
IndexError inside `hill_climb` ends that one hill climb instead; generation, the other
phases and every check run unchanged.
"""

import sys

from hypothesis.internal.conjecture import optimiser

_hill_climb = optimiser.Optimiser.hill_climb


def hill_climb(self):
    try:
        _hill_climb(self)
    except IndexError:
        pass


optimiser.Optimiser.hill_climb = hill_climb

from schemathesis.cli import schemathesis  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "schemathesis"
    sys.exit(schemathesis())
