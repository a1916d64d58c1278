"""The stores. `base.py` is the contract callers see (one protocol per role), `factory.py` the one
place that knows the backends; `shared/` builds one store from collaborators over a backend, and
each backend's folder (`sqlite/`, `mongo/`) holds all of its driver code. Imports only the core."""
