"""The C library's allocator, tuned for repeated forward passes on the CPU.

glibc hands blocks above its mmap threshold out as fresh pages and gives freed memory at the top
of the heap back to the system above its trim threshold; both thresholds adapt to the blocks seen,
so whether a batch's feature maps reuse the last batch's memory depends on what else the process
allocated in between. When they do not, every batch touches fresh pages, and the kernel's zeroing
of them costs as much as the forward pass (EfficientNet-Lite0 on two cores: ~14,000 page faults
per batch of 4 images, twice the time of the forward pass alone). Fixed thresholds keep freed
feature maps in the heap for the next batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit systems; blocks above it are always mapped afresh
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc keep freed blocks up to `MMAP_THRESHOLD` in its heap, and return up to
    `TRIM_THRESHOLD` of free heap top to the system only above that; once per process. Return
    whether the allocator took the settings (False off glibc, e.g. on macOS or Windows)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def release_freed_memory() -> bool:
    """Give the free memory of glibc's heap back to the system (`malloc_trim`), after a one-off
    large allocation such as decoding a 40-megapixel image; return whether it could."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def _libc_function(name: str):  # noqa: ANN202 - a ctypes function pointer
    """glibc's function `name`, or None off glibc (macOS, Windows, musl without it)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
