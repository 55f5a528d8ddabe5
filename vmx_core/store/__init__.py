"""The config store (storage.config) and the management operations over it."""
