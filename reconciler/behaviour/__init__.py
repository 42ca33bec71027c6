"""Model behaviour: run an image's samples in Azure ML's own inference server on this machine.

    venv.py      the scoring environment: a cached virtualenv per conda file (uv, else venv + pip)
    launcher.py  run inside that environment: azmlinfsrv on 127.0.0.1, no other network, dies with us
    server.py    one server subprocess: start, readiness, requests, always stopped; the user's traceback
    runner.py    lay out a version as the image does (providers.layout), run its samples
    service.py   what the engine asks: a version's run, cached by (image fingerprint, samples digest)
    versions.py  which versions a plan compares: the repository's, and what the deployed image runs
    gc.py        least-recently-used pruning of the virtualenv and result caches (``reconciler gc``)

The comparison of two runs and the gates are pure: ``core.behaviour``.
"""
