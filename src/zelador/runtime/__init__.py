"""The shell: the event loop, the daemon that wires sources to engines to sinks, control."""
