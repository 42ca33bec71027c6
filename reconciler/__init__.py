"""edge-reconciler: GitOps for machine-learning models on Azure IoT Edge.

The pipeline, one package per stage (read the folders top to bottom):

    spec/       files -> DesiredState        (YAML, JSON Schema, cross-checks, fingerprints)
    core/       DesiredState + Snapshot -> Plan   (pure: diff, ordering, manifests, drift)
    providers/  Snapshot reads and Change execution against a backend (local, azure)
    engine.py   refresh -> plan -> apply, with locking and saved-plan checks
    cli/        arguments -> engine -> views (text, markdown, json, github)
"""

__version__ = "0.1.0"
