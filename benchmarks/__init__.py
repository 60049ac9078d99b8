"""Benchmarks: mnn side by side with a hand-written floor, torch.autograd and tinynn.

Run them all with ``python benchmarks/run.py`` (or ``nox -s bench``); see ``run.py``.
"""
