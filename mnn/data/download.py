"""Download files from a list of mirrors, check each against its published checksum, atomically.

For each file, the mirrors are tried in turn. The bytes stream into a temporary
file in the target directory while a hash is computed; only when the hash equals
the published one is the temporary file renamed over the final name
(``os.replace``, one atomic step). A download that breaks off, or whose bytes
are not the published ones, leaves nothing behind, and a file already present
with the right checksum is not fetched again.

Checksums are written ``"<algorithm>:<hex digest>"`` (``"md5:f68b..."``,
``"sha256:..."``), any algorithm ``hashlib`` knows.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from mnn.data.errors import DownloadError
from mnn.files import atomic_file
from mnn.types import Path

_CHUNK = 1 << 16


def file_checksum(path: str, checksum: str) -> str:
    """The digest of the file at ``path`` with the algorithm that ``checksum`` names."""
    algorithm = _algorithm(checksum)
    digest = hashlib.new(algorithm, usedforsecurity=False)  # integrity, not security
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return f"{algorithm}:{digest.hexdigest()}"


def download(directory: Path, checksums: Mapping[str, str], base_urls: Sequence[str],
             timeout: float = 30.0) -> list[str]:
    """Fetch every file named in ``checksums`` into ``directory``; return their paths.

    ``base_urls`` are the mirrors, tried in order (file URL = base URL + name).
    Raises ``DownloadError`` listing, for each mirror, why it failed, if no mirror
    gives a file with the expected checksum.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, checksum in checksums.items():
        path = os.path.join(directory, name)
        if not (os.path.isfile(path) and file_checksum(path, checksum) == checksum.lower()):
            _fetch(name, path, checksum.lower(), base_urls, timeout)
        paths.append(path)
    return paths


def _fetch(name: str, path: str, checksum: str, base_urls: Sequence[str], timeout: float):
    failures, offline = [], True
    for base in base_urls:
        url = base if base.endswith("/") else base + "/"
        url += name
        try:
            got = _download_to(url, path, checksum, timeout)
        except urllib.error.HTTPError as error:  # the server answered: not an offline problem
            offline = False
            failures.append(f"{url}: HTTP {error.code} {error.reason}")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            failures.append(f"{url}: {reason}")
        else:
            if got == checksum:
                return
            offline = False
            failures.append(f"{url}: checksum mismatch: expected {checksum}, got {got}")
    hint = (" No mirror could be reached: is this machine offline? Then copy the files into "
            f"{os.path.dirname(path) or '.'} yourself.") if offline else ""
    raise DownloadError(f"could not download {name} from any of {len(base_urls)} mirrors: "
                        + "; ".join(failures) + "." + hint)


class _ChecksumMismatch(Exception):
    """The downloaded bytes are not the published ones: the new file is not kept."""

    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def _download_to(url: str, path: str, checksum: str, timeout: float) -> str:
    """Stream ``url`` into ``path`` atomically, kept only if its digest is ``checksum``.

    Returns the digest found. On a mismatch or any error nothing is left behind and
    an old file at ``path`` stays as it was (``mnn.files.atomic_file``).
    """
    algorithm = _algorithm(checksum)
    digest = hashlib.new(algorithm, usedforsecurity=False)  # integrity, not security
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_file(path) as file:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                file.write(chunk)
            got = f"{algorithm}:{digest.hexdigest()}"
            if got != checksum:
                raise _ChecksumMismatch(got)  # leaves the with block: the bytes are dropped
    except _ChecksumMismatch as mismatch:
        return mismatch.got
    return got


def _algorithm(checksum: str) -> str:
    algorithm, _, hexdigest = checksum.partition(":")
    algorithm = algorithm.lower()
    if not hexdigest or algorithm not in hashlib.algorithms_available:
        raise ValueError(f"checksum {checksum!r}: expected '<algorithm>:<hex digest>' with an "
                         f"algorithm hashlib knows, such as 'sha256:...' or 'md5:...'")
    return algorithm
