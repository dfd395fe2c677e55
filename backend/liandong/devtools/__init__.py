"""Tools for a local shop and nothing else: a local anvil chain, the local escrow deployment, dev
buyers that pay from anvil's well-known accounts, and the demo catalogue.

Only the CLI (`up`, `simulate`), the tests and the benchmarks import this package; the production
layers must not (an import-linter contract in CI says so), because its keys are public.
"""
