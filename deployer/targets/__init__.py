"""Deployment targets: `base` (the interface), `kubernetes` (the only importer of the kubernetes client)."""
