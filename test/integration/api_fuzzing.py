"""Schemathesis against the plugin's own part of a running Galaxy's OpenAPI document.

``fuzz(galaxy_url, api_key, examples, workdir)`` runs the ``schemathesis`` command (every check,
every phase, a bounded number of cases per operation) as the user whose API key it is, and returns
what it reported. The document it is given is Galaxy's own ``/openapi.json`` cut to the plugin's
paths, with two of Galaxy's parts left out because their handling is Galaxy's, not the plugin's,
and Galaxy answers them on every route, its own included: the ``run-as`` header (an undecodable id
there is Galaxy's 400 before any route runs) and the session-cookie, query-key and bearer schemes
(a malformed session cookie is Galaxy's 400 "Wrong guid"). ``examples`` put the user's own ids into
the document, so that requests also reach past the id checks to the storage server.

Two checks are told of rules the document cannot hold. Names are checked against the rules of the
authorization's cloud, providers and secret modes are the admin's to enable, and a record's fields
depend on each other, so a request the document calls valid may still be the user's 400: that
status counts as an answer for ``positive_data_acceptance``. And a body larger than the admin's
``max_request_bytes`` is refused with 413 before it is read, whatever it holds: for both
``positive_data_acceptance`` and ``negative_data_rejection``. 5xx is never an answer
(``not_a_server_error``).
"""

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import requests

PLUGIN_PATHS = "/api/cloud/"
AUTH_SCHEME = "APIKeyHeader"
GALAXY_HEADERS = ("run-as",)
SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "429", "5xx"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"""


@dataclass
class FuzzReport:
    exit_code: int
    output: str
    cases: int
    failures: int


def plugin_document(document: dict, examples: dict[str, Any]) -> dict:
    """Galaxy's document with the plugin's paths only (see the module's docstring); ``examples``
    maps a parameter or body field name to a value put in as its example."""
    cut = copy.deepcopy(document)
    cut["paths"] = {path: item for path, item in cut["paths"].items() if path.startswith(PLUGIN_PATHS)}
    for item in cut["paths"].values():
        for operation in item.values():
            operation["security"] = [{AUTH_SCHEME: []}]
            operation["parameters"] = [p for p in operation.get("parameters", []) if p["name"] not in GALAXY_HEADERS]
            for parameter in operation["parameters"]:
                if parameter["name"] in examples:
                    parameter["example"] = examples[parameter["name"]]
    schemes = cut["components"]["securitySchemes"]
    cut["components"]["securitySchemes"] = {AUTH_SCHEME: schemes[AUTH_SCHEME]}
    for schema in cut["components"]["schemas"].values():
        for name, field in schema.get("properties", {}).items():
            if name in examples:
                field["examples"] = [examples[name]]
    return cut


def fuzz(
    galaxy_url: str, api_key: str, examples: dict[str, Any], workdir: str, max_examples: int, seed: int
) -> FuzzReport:
    response = requests.get(f"{galaxy_url.rstrip('/')}/openapi.json", timeout=60)
    response.raise_for_status()
    document_path = os.path.join(workdir, "plugin-openapi.json")
    with open(document_path, "w") as fh:
        json.dump(plugin_document(response.json(), examples), fh)
    report_path, config_path = (
        os.path.join(workdir, "schemathesis-report.json"),
        os.path.join(workdir, "schemathesis.toml"),
    )
    with open(config_path, "w") as fh:
        fh.write(CONFIG)
    command = [
        SCHEMATHESIS, "--config-file", config_path, "run", document_path,
        "--url", galaxy_url.rstrip("/"),
        "--header", f"x-api-key: {api_key}",
        "--checks", "all",
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        # One worker: under two, Hypothesis's ast.parse of lambdas trips a CPython 3.11 bug
        # ("AST constructor recursion depth mismatch") that schemathesis reports as its own error.
        "--workers", "1",
        "--request-timeout", "60",
        "--report", "json", "--report-json-path", report_path,
        "--no-color",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=900)
    with open(os.path.join(workdir, "schemathesis-output.txt"), "w") as fh:
        fh.write(run.stdout + run.stderr)
    cases = failures = 0
    if os.path.exists(report_path):
        with open(report_path) as fh:
            report = json.load(fh)
        cases, failures = _counts(report)
    return FuzzReport(run.returncode, run.stdout + run.stderr, cases, failures)


def _counts(report: dict) -> tuple[int, int]:
    """(test cases run, failures and errors) from schemathesis's JSON report."""
    failed = sum(item.get("count", 1) for item in report.get("failures", []) + report.get("errors", []))
    return int(report["test_cases"]["generated"]), failed
