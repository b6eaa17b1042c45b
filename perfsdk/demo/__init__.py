"""The demo: a real shop service with perfsdk in it, simulated users, and ``perfsdk demo``."""
