"""What zelador keeps on disk: the restart-survival state (and, later, the history)."""
