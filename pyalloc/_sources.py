"""Which C files make which binary. Shared by setup.py, pyalloc/_build.py and the Makefile.

csrc/core/ is the allocator core (its public header, pyalloc.h, documents the C API);
csrc/preload/ is the LD_PRELOAD front end, which also owns the trace format (csrc/preload/
trace.h: written by trace.c inside the library, read back by replay.c in the cffi module).
"""

# The allocator core: arena, free index, pools, slabs.
CORE_SOURCES = [
    "csrc/core/arena.c",
    "csrc/core/freeindex.c",
    "csrc/core/pool.c",
    "csrc/core/slab.c",
]

# Batch entry points for benchmarks and trace replay (linked into the cffi module).
TOOL_SOURCES = [
    "csrc/core/bench.c",
    "csrc/preload/replay.c",
]

# The LD_PRELOAD library: the core plus the malloc front end.
PRELOAD_SOURCES: list = [
    *CORE_SOURCES,
    "csrc/preload/preload.c",
    "csrc/preload/small.c",
    "csrc/preload/huge.c",
    "csrc/preload/stats.c",
    "csrc/preload/trace.c",
]

# The CPython extension pyalloc._pool (Pool, Slab, Block as C types) over the core.
POOL_MODULE_SOURCES = ["csrc/python/poolmodule.c", *CORE_SOURCES]

# Include directories: the core's headers for everything; csrc/ itself for "preload/trace.h".
INCLUDE_DIRS = ["csrc/core", "csrc"]

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
CORE_CFLAGS = ["-std=gnu11", "-O2", *WARNINGS, "-fno-strict-aliasing"]
PRELOAD_CFLAGS = [*CORE_CFLAGS, "-shared", "-fPIC", "-fvisibility=hidden",
                  "-ftls-model=initial-exec", "-Icsrc/core"]
PRELOAD_LDFLAGS = ["-pthread", "-Wl,-z,now", "-Wl,--no-undefined"]
