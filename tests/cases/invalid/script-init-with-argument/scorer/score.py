"""Scoring script: init() once, then run(input_data) per request."""


def init(model_dir):
    pass


def run(input_data):
    return input_data
