"""Alerts: incidents (pure), the durable outbox and its channels."""
