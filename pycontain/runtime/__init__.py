"""The runtime core: a container's whole life, shared by the docker-like CLI, the Python API
and pycontain-oci.

    runtime.py     Runtime: state and storage roots, lookup, create
    container.py   Container: run, start (supervisor), wait, kill, stop, pause, update, remove
    exec.py        exec into a running container
    process.py     the container's process from fork to exec (runs in the child)
    rootfs.py      overlayfs or bind root, mounts, devices, pivot_root, masked paths
    cgroups/       one interface (base.py), the v1 and v2 drivers
    seccomp.py     OCI seccomp profiles through libseccomp
    hooks.py       OCI hooks: the state JSON on stdin, timeouts
    spec.py        the OCI runtime-spec config model
    state.py       per-container state directories, liveness by pid start time
    cleanup.py     teardown that leaves nothing behind
    procs.py       pids by pidfd, waits, exit codes, the setup error pipe
    args.py        sizes, CPUs, signals, volumes, environment lists
    preload.py     libpyalloc.so inside a container
    result.py      Result of a run or exec
    _sys.py        syscall wrappers over the cffi module _sys_native (_sys_build.py)
"""
