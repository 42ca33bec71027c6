"""Renderers: pure functions from values (plans, drift reports, diagnostics) to text."""
