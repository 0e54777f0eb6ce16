"""Python client for the collaboration protocol."""
