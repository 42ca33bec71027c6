"""Exit codes are API: scripts and CI branch on them.

    0   success; with --detailed-exitcode: success and no changes / no drift
    1   an expected error: invalid specs, refused plan, held lock, backend failure
    2   with --detailed-exitcode (plan) or always (drift): there are changes / drift
    3   an unexpected error: a bug in edge-reconciler, please report it
    130 interrupted (Ctrl-C)
"""

OK = 0
ERROR = 1
CHANGES = 2
BUG = 3
INTERRUPTED = 130
