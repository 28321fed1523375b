"""aiotlab: AIoT / ICS-security practical-exam harness."""

__version__ = "0.1.0"
