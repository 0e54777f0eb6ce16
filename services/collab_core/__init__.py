"""Shared core: OT text type, protocol messages, tokens. Pure; no I/O."""
