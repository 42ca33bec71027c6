"""Backends. A provider reads a Snapshot and executes Changes; it is the only code that
talks to a backend. Providers are looked up by name in ``registry.py`` and imported lazily,
so a local plan never imports an Azure SDK."""
