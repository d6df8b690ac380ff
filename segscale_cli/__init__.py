"""``segscale``: the command-line client for a segscale API, local (``make dev``) or deployed."""
