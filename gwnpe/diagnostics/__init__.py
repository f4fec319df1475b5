"""Diagnostics: PP-test, Jensen-Shannon divergences, comparison figures of merit, and figures."""
