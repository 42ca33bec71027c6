"""Frozen values shared by every stage: keys, specs, actual state, plans, diagnostics.

Standard library only: these types are the contract between the pure core, the providers
and the CLI, so nothing here may depend on a backend or on I/O.
"""
