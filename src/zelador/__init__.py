"""zelador: keeps vendor daemons alive on point-of-sale terminals."""

__version__ = "0.2.0"
