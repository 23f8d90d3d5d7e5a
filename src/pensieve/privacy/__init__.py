"""Privacy: find private data in request text (`detectors`) and mask it before a cloud call (`redact`).

Pure and I/O-free: the burst controller scans every request with a `PrivacyScanner`, blocks the cloud when the
privacy mode says so, or replaces each finding with `[REDACTED:KIND]` in `redact` mode.
"""
