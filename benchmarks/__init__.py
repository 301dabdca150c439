"""torchinit's benchmark harness (run from a checkout: ``python -m benchmarks.run --help``).

``run.py`` is the one command; ``cases.py`` discovers the ops and their torch baselines; ``timing.py``
holds the timers, the copy-bandwidth probe and the environment record; ``measure.py`` times one op
at one size and dtype; ``init_speed.py`` times ``apply_init``; ``report.py`` and ``plots.py`` turn a
result JSON into Markdown and PNG.
"""
