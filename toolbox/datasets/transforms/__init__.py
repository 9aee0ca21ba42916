"""datasets transforms package."""
