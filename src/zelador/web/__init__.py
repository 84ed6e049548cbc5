"""The status page, /api/status and /metrics: a threaded server reading the loop's snapshot."""
