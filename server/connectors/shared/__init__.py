"""What every store does, written once over a backend's primitives."""
