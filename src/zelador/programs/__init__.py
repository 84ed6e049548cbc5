"""Watched programs: the pure engine (states, policy, group) and the edges it drives."""
