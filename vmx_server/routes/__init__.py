"""HTTP routes: each maps a request to a Gateway call and its answer back to HTTP."""
