"""presence: rosters, cursors and join / leave events of every document."""
