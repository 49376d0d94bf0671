"""The gateway.yaml JSON Schema, loaded and compiled once per process."""

from __future__ import annotations

import functools
import json
from importlib import resources

from jsonschema import Draft202012Validator


@functools.cache
def schema() -> dict:
    return json.loads(resources.files("mlxgw").joinpath("schemas/gateway.schema.json").read_text("utf-8"))


@functools.cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(schema())
