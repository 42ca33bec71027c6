"""Scoring script: init() once, then run(input_data) per request."""


def init():
    pass


def run(input_data):
    return input_data
