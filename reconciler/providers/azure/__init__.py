"""The Azure backend: Azure ML (models, images), Azure Container Registry (device credentials) and Azure IoT
Hub (edge deployments, the apply lock). ``provider.AzureProvider`` is the entry point; the registry of
providers imports it lazily, and no module of this package imports an Azure SDK at import time."""
