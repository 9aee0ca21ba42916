"""models layers package."""
