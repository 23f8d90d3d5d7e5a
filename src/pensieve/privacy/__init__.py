"""Privacy: find private data in request text (`scanner`, `detectors`) and mask it before a cloud call (`redact`).

`detectors` holds the built-in detectors (with their shared per-text state in `scan_text` and their
checksums in `checksums`); `scanner` runs them with the user's patterns and keywords.

Pure and I/O-free: the burst controller scans every request with a `PrivacyScanner`, blocks the cloud when the
privacy mode says so, or replaces each finding with `[REDACTED:KIND]` in `redact` mode.
"""
