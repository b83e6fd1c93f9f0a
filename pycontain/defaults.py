"""Where pycontain keeps things, and the defaults every subsystem shares.

The state root holds one directory per container (``$PYCONTAIN_ROOT``, else DEFAULT_ROOT), the
storage root the image store and containers' upper dirs (``$PYCONTAIN_STORAGE``, else
DEFAULT_STORAGE). DEFAULT_PATH is the PATH a container gets when neither its image nor its
caller sets one (runc's and docker's)."""

DEFAULT_ROOT = "/run/pycontain"
DEFAULT_STORAGE = "/var/lib/pycontain"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
