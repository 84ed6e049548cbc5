"""systemd integration: journald sink, sd_notify, unit files."""
