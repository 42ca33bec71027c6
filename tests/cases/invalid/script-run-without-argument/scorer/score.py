"""Scoring script: init() once, then run(input_data) per request."""


def init():
    pass


def run():
    return None
