"""affectflow's pure, typed stage functions: ingest, extract, align, store, train, evaluate.

Nothing in this package imports Prefect; `flows/` wraps these functions, the CLI (`affectflow/`) sits
on top of both. Dependencies point one way: flows -> pipeline -> models.
"""
