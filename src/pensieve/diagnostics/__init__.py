"""Diagnostics of the machine and the install: CPU features, child-process exit statuses, `pensieve doctor`.

`cpu_features` and `exit_status` use the standard library only: the set-up script (scripts/bootstrap.py)
loads them by file path before any dependency is installed, so the set-up and the server describe a
machine and a crash in the same words.
"""
