"""Pulling images from registries (the OCI distribution protocol).

    refs.py    ``[registry[:port]/]repo[:tag][@sha256:digest]`` as engines parse it
    client.py  HTTP(S) to a registry: Accept headers, bearer-token challenges, digests
    pull.py    manifest (an index resolved to this platform), config and layers streamed with
               their digests checked, into a staged OCI layout the store imports
"""
