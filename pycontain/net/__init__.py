"""Container networks on the standard CNI plugins (Debian's containernetworking-plugins).

    config.py  networks: CNI conflists under <storage>/networks, the default bridge network
    cni.py     running a plugin chain the way the CNI specification says (ADD, DEL, CHECK)
    netns.py   a container's network namespace, kept as a bind mount under the state root
    attach.py  a container joined to its networks (and ports published), and detached

Only root manages networks; a container's network namespace is made before the container,
attached through CNI ADD, joined by the container by path, and detached (CNI DEL, namespace
removed) when the container stops or is removed, whoever notices first.
"""
