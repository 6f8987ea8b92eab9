"""The allocator settings: freed feature maps are reused instead of mapped afresh."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from convlens.allocator import reuse_freed_memory

BLOCKS = 30
STEADY = 10  # the last blocks, once the heap has grown to hold one
BLOCK_PAGES = 4096  # 16 MiB, in 4 KiB pages

FAULTS = f"""
import resource, sys, torch
from convlens.allocator import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
faults = []
for _ in range({BLOCKS}):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty({BLOCK_PAGES} * 1024)  # float32: 4 bytes each, one page per 1024
    block.fill_(1.0)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[-{STEADY}:]))
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


def steady_page_faults(mode: str) -> int:
    """Minor page faults of the last STEADY of BLOCKS allocations of 16 MiB in a fresh process
    whose glibc maps every block above 128 KiB afresh (a fixed threshold, the worst case)."""
    result = subprocess.run(
        [sys.executable, "-c", FAULTS, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},
    )
    return int(result.stdout)


@glibc
def test_freed_blocks_are_reused_instead_of_mapped_afresh():
    assert steady_page_faults("plain") >= STEADY * BLOCK_PAGES
    assert steady_page_faults("reuse") < BLOCK_PAGES


@glibc
def test_the_settings_are_taken_once():
    assert reuse_freed_memory() is True
    assert reuse_freed_memory.cache_info().currsize == 1
