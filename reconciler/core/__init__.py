"""The pure core: manifests, target conditions, diffing, planning and drift.

No I/O, no SDK, no clock: every function here is a function of its arguments."""
