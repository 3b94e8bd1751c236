"""What the store refuses, as exceptions the commands turn into messages."""

from __future__ import annotations

from central.store.records import StoredRoster


class StoreMissingError(RuntimeError):
    """A read-only command found no store (or an empty one) where the config points.

    Read-only commands (``devices``, ``report``, ``leave list``) never create a store: a typo
    in ``[store] url`` must be an error naming the path, not an empty report that exits 0.
    """


class SchemaTooNewError(RuntimeError):
    """The store was migrated by a newer hall-central: this one does not know its schema and
    must not guess (docs/store.md "Migrations")."""


class RosterVersionError(ValueError):
    """A roster older than the one stored for its site, without ``force``."""

    def __init__(self, site: str, version: int, stored: StoredRoster):
        self.site, self.version, self.stored = site, version, stored
        published = stored.published_at.isoformat(timespec="seconds")
        super().__init__(
            f"site {site} has roster version {stored.version} stored (published "
            f"{published}); refusing the older version {version} "
            "(use --force to publish it anyway)"
        )


class StoreError(ValueError):
    """A write the store's data refuses (an account name taken): the request, not the store."""
