"""The monthly seal (docs/tamper.md "Monthly seal"): an RFC 9162 Merkle tree over a month's
events, its root signed with the centre's key and stored as a checkpoint; ``verify`` recomputes
it from the store, ``prove`` prints an inclusion proof that scripts/verify_proof.py checks."""
