"""The embedded local backend: Azure's semantics on one machine, no account needed.

State lives in one folder (``.reconciler/<environment>/`` by default):

    state.db                  SQLite: models, images, deployments, registries, devices
    blobs/sha256/<digest>     registered model files, content-addressed
    images/<name>/<label>/    a Docker build context and an OCI image layout per build
    secrets/registry-*.json   registry passwords (mode 0600), never in state.db
    apply.lock                held while an apply runs

Modules, one job each: ``store`` (SQLite), ``rows`` (what it holds), ``blobs``, ``images``
(builds), ``secrets`` (registry credentials), ``devices`` (IoT Hub's rules), ``snapshot``
(rows -> Snapshot), ``lock`` and ``provider`` (the Provider protocol on top of them).
"""
