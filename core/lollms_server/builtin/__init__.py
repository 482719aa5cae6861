"""Bindings shipped with the core and registered through entry points like any plugin."""
