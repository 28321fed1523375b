"""Check library: each module implements checks a lab can reference by name."""
