"""tollguard: a streaming, real-time detector of toll fraud on IP telephony."""

__version__ = "0.1.0"
