"""Benchmarks for stripe-checkout-mw: what the middleware costs, side by side.

Run them all with ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the
repository root; ``--smoke`` runs every section with tiny counts and judges no goal,
which is what CI does so the suite cannot rot. BENCHMARKS.md has the results.
"""
