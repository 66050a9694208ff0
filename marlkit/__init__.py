"""marlkit: a notebook-first, educational toolkit for multi-agent reinforcement learning.

Every public name of the multi-agent training guide is importable from here.
"""

__version__ = "0.1.0"
