"""Lab definitions (data) and the loader."""
