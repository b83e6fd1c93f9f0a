"""Which C files make which binary. Shared by setup.py, pyalloc/_build.py and the Makefile."""

# The allocator core: arena, free index, pools, slabs.
CORE_SOURCES = [
    "csrc/arena.c",
    "csrc/freeindex.c",
    "csrc/pool.c",
    "csrc/slab.c",
]

# Batch entry points for benchmarks and trace replay (linked into the cffi module).
TOOL_SOURCES = [
    "csrc/bench.c",
    "csrc/trace.c",
]

# The LD_PRELOAD library: the core plus the malloc front end. Empty until the front end
# exists; setup.py skips the library then.
PRELOAD_SOURCES: list = [
    *CORE_SOURCES,
    "csrc/preload.c",
    "csrc/preload_small.c",
    "csrc/preload_huge.c",
    "csrc/preload_stats.c",
    "csrc/preload_trace.c",
]

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
CORE_CFLAGS = ["-std=gnu11", "-O2", *WARNINGS, "-fno-strict-aliasing"]
PRELOAD_CFLAGS = [*CORE_CFLAGS, "-shared", "-fPIC", "-fvisibility=hidden",
                  "-ftls-model=initial-exec", "-Icsrc"]
PRELOAD_LDFLAGS = ["-pthread", "-Wl,-z,now", "-Wl,--no-undefined"]
