"""IoT Hub's rules, written once: every layer that needs one imports it from here.

* ``conditions``: the target-condition language (parse, the hub's refusals, evaluate on a twin).
* ``limits``: ids, modules, metrics, createOptions chunks, deployments per hub.
* ``precedence``: which deployments apply on a device (the highest-priority base, layers above it).
* ``manifest``: reading and normalising ``modulesContent`` (modules, images, registry credentials,
  layered or not, password placeholders).

It imports nothing of the project but ``reconciler.model`` (an import-linter contract), so that
``spec`` (validation), ``core`` (planning), both providers and the device simulator share one copy.
The Azure emulator under ``tests/`` keeps its own, on purpose: it must not check our reading of the
hub with that same reading.
"""
