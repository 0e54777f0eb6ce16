"""Measurements behind the capacity model in docs/scaling.md.

Each module is run from the repository root against the working tree and prints its
results to stdout (JSON, or a Markdown table for ``presence_tracker``):

- ``stack_costs``: unit costs of one ``bench.load`` scenario over its measured window.
- ``commit_path``: edit-transform's commit path, saturated, without gateways.
- ``commit_script``: the commit script alone on one Redis, 1 to N commits in flight.
- ``presence_path``: presence alone, joins then cursor updates at a fixed rate.
- ``presence_tracker``: presence's in-memory tracker as the sessions grow (no Redis).

``common`` holds what they share. A smoke run of each is in ``tests/unit/bench``.
"""
