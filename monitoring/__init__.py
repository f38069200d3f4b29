"""Drift monitoring: specs, reference profiles, the fast drift engine and the Evidently adapter.

See docs/monitoring.md. Only this package imports Evidently, and only on first use.
"""
