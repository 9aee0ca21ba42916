"""models heads package."""
