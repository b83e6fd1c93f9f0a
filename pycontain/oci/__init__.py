"""pycontain-oci: the runc-compatible OCI runtime command line on the runtime core.

    cli.py       the command line (runc's flags, verbs and log format)
    runtime.py   OciRuntime: the OCI lifecycle (create, start, state, kill, delete, exec, ...)
    config.py    config.json loaded and checked before anything is created
"""
