"""models segmentors package."""
