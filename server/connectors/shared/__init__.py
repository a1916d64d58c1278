"""What every store does, written once: the driver contract (backend.py) and the store composed over it (store.py)."""
