"""A broken iris scorer for the rollout demo: it loads, then fails on every request."""

import json
import os


def init():
    global model_dir
    model_dir = os.environ.get("AZUREML_MODEL_DIR", ".")


def run(input_data):
    request = json.loads(input_data)
    raise RuntimeError(f"this model was trained on the wrong labels ({len(request.get('data', []))} rows refused)")
