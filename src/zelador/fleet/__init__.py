"""The fleet: each terminal's state in ZooKeeper (seed 004), and reading it for the whole chain."""
