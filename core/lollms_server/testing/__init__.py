"""The contract test kit for binding plugins (a pytest plugin, see `plugin.py`)."""
