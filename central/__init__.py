"""The central program: collector, store, reports, board and its command line (hall-central)."""
