"""The README run as written."""
