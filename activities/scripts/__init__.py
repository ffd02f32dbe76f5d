"""Fixed scripts the worker runs in the sandbox (read as text, never imported by the worker)."""
