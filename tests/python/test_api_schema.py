"""The admin API against its own OpenAPI document, with schemathesis.

The document is the one a running kaos serves (GET /openapi.json), so the parts the fault registry
fills in at run time (the feature names, each feature's config schema) are tested too. Each
documented operation gets up to MAX_EXAMPLES generated requests that fit the document and, where it
takes any input, up to MAX_EXAMPLES that break it (a bad body, a missing header, an unknown
feature). Every answer must:

- not be a 5xx;
- have a status code the operation documents;
- have a content type the operation documents for that status;
- have a body that matches the documented schema.

Generation is derandomized (the same requests on every run) and the module fails rather than run
past BUDGET_S. It has a kaos of its own, so the rules and formats the POSTs create end with it.
"""

import json
import pathlib
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

MAX_EXAMPLES = 40
BUDGET_S = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# One test per documented operation, named from the document's source so that pytest can list the
# tests before kaos runs (test_every_operation_is_tested checks the served document has the same
# ones). Writes run first and deletes last, so that the reads see rules. GET / (HTML), /console.js,
# /console.css and /metrics (text) are tested like the rest: status and content type are checked,
# and their `type: string` schema holds for any text.
DOCUMENT = pathlib.Path(__file__).parents[2] / "src/control/openapi.json"
OPERATIONS = [(method.upper(), path) for path, operations in json.loads(DOCUMENT.read_text())["paths"].items()
              for method in operations]
OPERATIONS.sort(key=lambda operation: ["POST", "PUT", "GET", "DELETE"].index(operation[0]))


@pytest.fixture(scope="module")
def api(module_kaos):
    return schemathesis.openapi.from_url(f"http://{module_kaos.admin}/openapi.json")


@pytest.fixture(scope="module")
def features(module_kaos):
    status, answer = module_kaos.call("GET", "/features")
    assert status == 200, answer
    return {feature["name"]: feature for feature in answer}


@pytest.fixture(scope="module")
def deadline():
    return time.monotonic() + BUDGET_S


def requests(operation, mode, features):
    """schemathesis's requests for the operation. In the positive mode a rule's API and direction are
    made ones its feature takes (GET /features says which; the document cannot), and half the
    requests name tenant 1-1 user u, so that rules get created, listed and deleted and the 200
    answers are checked too. Negative requests are left as they are: they are meant to break the
    document."""

    @st.composite
    def fitted(draw):
        case = draw(operation.as_strategy(generation_mode=mode))
        if mode is GenerationMode.NEGATIVE:
            return case
        if "user" in case.path_parameters and draw(st.booleans()):
            case.path_parameters.update(tenant="1-1", user="u")
        feature = features.get(case.path_parameters.get("feature"))
        if feature is None:
            return case
        api_key = draw(st.sampled_from(feature["apiKeys"] or ["PRODUCE", "FETCH", "METADATA"]))
        direction = draw(st.sampled_from(feature["directions"]))
        if "apiKey" in case.path_parameters:
            case.path_parameters.update(apiKey=api_key, direction=direction)
        else:
            case.body.update(apiKeys=api_key, direction=direction)
            config = case.body.setdefault("config", {})
            if feature["requiresTopics"] and not (config.get("topics") or config.get("topicPatterns")):
                config["topics"] = ["orders"]
        return case

    return fitted()


def test_the_served_document_is_valid_openapi(api):
    api.validate()


def test_every_operation_is_tested(api):
    served = [(method.upper(), path) for path, operations in api.raw_schema["paths"].items()
              for method in operations]
    assert sorted(served) == sorted(OPERATIONS)


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{method} {path}" for method, path in OPERATIONS])
def test_operation_answers_as_documented(api, features, deadline, method, path):
    # Indexing reaches GET /openapi.json too, which schemathesis leaves out when it lists operations.
    operation = api[path][method]
    definition = operation.definition.raw
    takes_input = definition.get("parameters") or "requestBody" in definition or definition.get("security")
    # Without parameters, body or security there is no request that breaks the document.
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if takes_input else [GenerationMode.POSITIVE]
    for mode in modes:
        @given(case=requests(operation, mode, features))
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def answers_as_documented(case):
            if time.monotonic() > deadline:
                pytest.fail(f"the module ran past its {BUDGET_S} s budget; lower MAX_EXAMPLES")
            case.call_and_validate(checks=CHECKS, timeout=5)

        answers_as_documented()


def test_an_oversized_body_gets_a_documented_413(api):
    body = {"tenant": "t" * (1 << 20), "topic": "orders", "messageFormat": "JSON"}
    case = api["/tenant"]["POST"].Case(body=body)
    assert case.call_and_validate(checks=CHECKS, timeout=5).status_code == 413
