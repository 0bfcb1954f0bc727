"""A download that survives slow hosts, cut connections and kills: `fetch`.

CIFAR-10's public host serves about 70 kB/s (2026): 163 MB take most of an hour, and a
connection cut half-way must not start over. `fetch` streams into `<path>.partial` (a fixed
name, so a later call finds it), resumes from its end with an HTTP Range request, retries with
exponential backoff, tries mirrors in turn, checks the MD5 as the bytes arrive, and moves the
file into place only once the checksum matches.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from typing import Callable, Sequence

MIRRORS_VARIABLE = "JAXLOTTERY_DATA_MIRRORS"  # comma-separated URLs of the same file, tried first
CHUNK = 1 << 20


class ChecksumMismatch(ValueError):
    """The downloaded bytes are not the file asked for."""


def mirrors(url: str) -> list[str]:
    """The URLs to try for `url`: those in $JAXLOTTERY_DATA_MIRRORS (a folder URL gets the
    file's name appended), then `url` itself."""
    name = url.rsplit("/", 1)[-1]
    extra = [m.strip() for m in os.environ.get(MIRRORS_VARIABLE, "").split(",") if m.strip()]
    extra = [m + name if m.endswith("/") else m for m in extra]
    return list(dict.fromkeys(extra + [url]))


def fetch(urls: Sequence[str], path: str, md5: str, *, attempts: int = 5, backoff: float = 2.0,
          timeout: float = 60.0, progress: bool = True,
          sleep: Callable[[float], None] = time.sleep) -> str:
    """Download the file whose MD5 is `md5` to `path` from the first of `urls` that serves it.

    Each URL gets `attempts` tries, waiting backoff, 2 x backoff, ... seconds between them; a
    try resumes from `<path>.partial` where an earlier one (or an earlier, killed process)
    stopped. A server that ignores the Range header sends the whole file again, which is then
    written from the start. Bytes that do not hash to `md5` raise ChecksumMismatch (the partial
    file is deleted; nothing is moved into place). Returns the URL that served the file; the
    last error if none did."""
    partial = path + ".partial"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    error: Exception | None = None
    for url in urls:
        for attempt in range(attempts):
            if attempt:
                sleep(backoff * 2 ** (attempt - 1))
            try:
                digest = _fetch_once(url, partial, timeout, progress)
            except urllib.error.HTTPError as e:
                error = e
                if e.code in (403, 404, 410):  # this URL will not serve it: next mirror
                    break
                continue
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                # a cut (IncompleteRead), a reset, a timeout: try again from where it stopped
                error = e
                continue
            if digest != md5:
                os.unlink(partial)
                raise ChecksumMismatch(f"{url} served a file with MD5 {digest}, not {md5}: a "
                                       "wrong or corrupted file (nothing was kept)")
            os.replace(partial, path)
            return url
    raise error if error is not None else ValueError("no URL to download from")


def _fetch_once(url: str, partial: str, timeout: float, progress: bool) -> str:
    """One request: append to `partial` from its current size (or write it from the start if
    the server sends the whole file); returns the MD5 of the complete file."""
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing past our end: the partial file is complete
            return _md5_of(partial)
        raise
    with response:
        resumed = have and response.status == 206
        h = hashlib.md5()
        if resumed:
            h = _md5_of(partial, h)
        else:
            have = 0
        size = response.headers.get("Content-Length")
        total = have + int(size) if size else None
        bar = _bar(progress, total, have, os.path.basename(partial)[:-len(".partial")])
        try:
            with open(partial, "ab" if resumed else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if total is not None and os.path.getsize(partial) < total:
            raise OSError(f"connection closed after {os.path.getsize(partial)} of {total} bytes")
        return h.hexdigest()


def _md5_of(path: str, h=None):
    """The MD5 of a file (hex), or `h` updated with its bytes when given."""
    own = h is None
    h = hashlib.md5() if own else h
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest() if own else h


def _bar(progress: bool, total: int | None, initial: int, name: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"downloading {name}", dynamic_ncols=True)
