"""Compare two manifests (or any path -> SHA-256 listings) without asking the service."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ctxcloud_client.models import Entry, Manifest, ManifestDiff

Listing = Manifest | Mapping[str, str] | Iterable[Entry]


def _hashes(listing: Listing) -> dict[str, str]:
    if isinstance(listing, Mapping):
        return {str(path): str(sha256) for path, sha256 in listing.items()}
    return {entry.path: entry.sha256 for entry in listing}


def diff_manifests(old: Listing, new: Listing) -> ManifestDiff:
    """What changed from `old` to `new`, by path and SHA-256: sorted added, removed and changed
    paths. Either side may be a Manifest, entries, or a `{path: sha256}` mapping (a local
    folder's hashes, say), so a push or pull can plan its work from the same function."""
    before, after = _hashes(old), _hashes(new)
    return ManifestDiff(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(sorted(p for p in before.keys() & after.keys() if before[p] != after[p])),
    )
