"""Checks: health probes, resource and system rules, HTTP checks (rules pure, probes in workers)."""
