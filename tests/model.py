"""A small pure-Python reference model of a pyalloc pool, written from the placement contract
in DESIGN.md and csrc/pyalloc.h, not from the C code. Tests replay the same operations on the
model and on a real pool and compare the free set (offset, size, seq) after every step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

ALIGN = 16
HEADER = 8
MIN_BLOCK = 64
FIRST = ALIGN - HEADER  # offset of the first block's header


@dataclass
class MBlock:
    start: int  # offset of the header
    total: int  # total size including the header
    free: bool
    seq: int = 0

    @property
    def offset(self) -> int:
        return self.start + HEADER

    @property
    def usable(self) -> int:
        return self.total - HEADER


def need_for(n: int) -> int:
    need = (max(n, 1) + HEADER + ALIGN - 1) // ALIGN * ALIGN
    return max(need, MIN_BLOCK)


class Model:
    def __init__(self, capacity: int, policy: str, base_address: int = 0):
        self.capacity = capacity
        self.policy = policy
        self.base = base_address
        end = capacity - HEADER
        self.blocks: List[MBlock] = [MBlock(FIRST, end - FIRST, True, 0)]
        self.next_seq = 1

    # -- queries --
    def free_set(self) -> List[Tuple[int, int, int]]:
        return [(b.offset, b.usable, b.seq) for b in self.blocks if b.free]

    def live_set(self) -> List[Tuple[int, int]]:
        return [(b.offset, b.usable) for b in self.blocks if not b.free]

    def _index(self, offset: int) -> int:
        for i, b in enumerate(self.blocks):
            if b.offset == offset:
                return i
        raise KeyError(offset)

    def choose(self, need: int) -> Optional[int]:
        cands = [i for i, b in enumerate(self.blocks) if b.free and b.total >= need]
        # Wilderness preservation: the free top (the last block) is a candidate only when no
        # other free block fits.
        top = len(self.blocks) - 1
        if len(cands) > 1 and cands[-1] == top:
            cands.pop()
        if not cands:
            return None
        keys = {
            "best": lambda i: (self.blocks[i].total, self.blocks[i].start),
            "worst": lambda i: (-self.blocks[i].total, self.blocks[i].start),
            "first": lambda i: self.blocks[i].start,
            "fifo": lambda i: (self.blocks[i].seq, self.blocks[i].start),
        }
        return min(cands, key=keys[self.policy])

    # -- operations; each returns the payload offset or None when the pool is exhausted --
    def _carve(self, i: int, need: int) -> int:
        b = self.blocks[i]
        rest = b.total - need
        b.free = False
        if rest >= MIN_BLOCK:
            b.total = need
            self.blocks.insert(i + 1, MBlock(b.start + need, rest, True, b.seq))
        return b.offset

    def alloc(self, n: int, align: Optional[int] = None) -> Optional[int]:
        need = need_for(n)
        if align is None or align <= ALIGN:
            i = self.choose(need)
            return None if i is None else self._carve(i, need)
        i = self.choose(need + align + MIN_BLOCK - ALIGN)
        if i is None:
            return None
        b = self.blocks[i]
        pay = self.base + b.offset
        at = (pay + align - 1) // align * align
        while at != pay and at - pay < MIN_BLOCK:
            at += align
        gap = at - pay
        if gap:
            self.blocks.insert(i, MBlock(b.start, gap, True, b.seq))
            b.start += gap
            b.total -= gap
            i += 1
        return self._carve(i, need)

    def alloc_many(self, sizes: List[int]) -> Optional[List[int]]:
        """One request for the sum of the block sizes, carved in order from the chosen block's
        low end; the last block is carved as a single allocation would be."""
        needs = [need_for(n) for n in sizes]
        i = self.choose(sum(needs))
        if i is None:
            return None
        b = self.blocks[i]
        pos, out, head = b.start, [], []
        for need in needs[:-1]:
            head.append(MBlock(pos, need, False))
            out.append(pos + HEADER)
            pos += need
        rest = MBlock(pos, b.total - (pos - b.start), True, b.seq)
        self.blocks[i:i + 1] = [*head, rest]
        out.append(self._carve(i + len(head), needs[-1]))
        return out

    def reset(self) -> None:
        """Every block freed at once: one free block with a new seq."""
        self.blocks = [MBlock(FIRST, self.capacity - HEADER - FIRST, True, self.next_seq)]
        self.next_seq += 1

    def _release(self, i: int) -> None:
        b = self.blocks[i]
        b.free = True
        if i + 1 < len(self.blocks) and self.blocks[i + 1].free:
            b.total += self.blocks.pop(i + 1).total
        if i > 0 and self.blocks[i - 1].free:
            prev = self.blocks[i - 1]
            prev.total += self.blocks.pop(i).total
            b = prev
        b.seq = self.next_seq
        self.next_seq += 1

    def free(self, offset: int) -> None:
        i = self._index(offset)
        assert not self.blocks[i].free
        self._release(i)

    def realloc(self, offset: int, n: int) -> Optional[int]:
        i = self._index(offset)
        b = self.blocks[i]
        need = need_for(n)
        if need <= b.total:
            if b.total - need >= MIN_BLOCK:
                tail = MBlock(b.start + need, b.total - need, False)
                b.total = need
                self.blocks.insert(i + 1, tail)
                self._release(i + 1)
            return offset
        nxt = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
        if nxt is not None and nxt.free and b.total + nxt.total >= need:
            combined = b.total + nxt.total
            rest = combined - need
            if rest >= MIN_BLOCK:
                b.total = need
                nxt.start = b.start + need
                nxt.total = rest
            else:
                b.total = combined
                self.blocks.pop(i + 1)
            return offset
        new = self.alloc(n)
        if new is None:
            return None
        self.free(offset)
        return new

    def check_tiling(self) -> None:
        pos = FIRST
        prev_free = False
        for b in self.blocks:
            assert b.start == pos
            assert b.total >= MIN_BLOCK and b.total % ALIGN == 0
            assert not (prev_free and b.free)
            prev_free = b.free
            pos += b.total
        assert pos == self.capacity - HEADER


def tiles(capacity: int, free: List[Tuple[int, int, int]], live: List[Tuple[int, int]]) -> Dict:
    """Checks that free and live blocks (from a real pool) tile the arena exactly, with no
    overlap and no two free blocks adjacent; returns byte totals."""
    blocks = sorted([(o, s, True) for o, s, _ in free] + [(o, s, False) for o, s in live])
    pos = FIRST
    prev_free = False
    for off, size, is_free in blocks:
        assert off - HEADER == pos, f"gap or overlap at offset {off} (expected {pos + HEADER})"
        assert not (prev_free and is_free), f"adjacent free blocks at {off}"
        prev_free = is_free
        pos = off + size
    assert pos == capacity - HEADER, "blocks do not reach the arena end"
    return {
        "free": sum(s for _, s, _ in free),
        "used": sum(s for _, s in live),
        "headers": HEADER * len(blocks),
    }
