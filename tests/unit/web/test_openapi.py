import re

import pytest

from opencues.web import openapi
from opencues.web.routes import ROUTES

ERROR_CODES = {"401", "403", "404", "429", "503"}


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    """The served document. It needs no database, so one app (lifespan not started) serves the module."""
    from opencues.settings import Settings
    from opencues.web.app import create_app
    from tests.in_process_client import InProcessClient

    data = tmp_path_factory.mktemp("openapi")
    app = create_app(Settings(data_dir=data, database_url=f"sqlite:///{data}/unused.db"))
    response = InProcessClient(app).get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operation_of(document, route):
    path = re.sub(r":[a-z]+\}", "}", route.path)  # FastAPI documents {user_id:path} as {user_id}
    assert path in document["paths"], f"{route.method} {route.path} is not documented"
    return document["paths"][path][route.method.lower()]


def test_document_is_valid_openapi(document):
    # Imported here (~0.1 s), not at every xdist worker's collection.
    from openapi_spec_validator import validate

    validate(document)


def test_basic_auth_scheme(document):
    scheme = document["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "basic")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_is_documented_with_security_errors_and_bodies(document, route):
    docs = openapi.docs_for(route)
    assert docs is not None, "give this route docs=openapi.Docs(...) or add it to openapi.SPEC_DOCS"
    operation = operation_of(document, route)
    assert operation["security"] == [{openapi.SECURITY_SCHEME: []}]
    responses = operation["responses"]
    # FastAPI's validation 422 is gone; the only 422 is a reused Idempotency-Key.
    assert ("422" in responses) == any(p.name == "Idempotency-Key" for p in docs.params)
    for code in ERROR_CODES:
        assert responses[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    success = responses[str(route.status if route.status != 200 else docs.status)]
    if docs.content is not None:  # a body that is neither JSON nor CSV (the screenshots ZIP)
        assert set(success["content"]) == set(docs.content)
    else:
        assert "application/json" in success["content"]
        assert ("text/csv" in success["content"]) == docs.csv  # analytics routes are JSON only (spec §0)
    if docs.body:
        body = operation["requestBody"]
        assert body["required"] is True
        assert set(body["content"]) == set(docs.body)
        assert {"400", "413", "415"} <= set(responses)
    else:
        assert "requestBody" not in operation
    for param in docs.params:
        assert any(p["name"] == param.name and p["in"] == param.where for p in operation["parameters"])


def test_segment_bodies_and_responses(document):
    paths = document["paths"]
    schemas = document["components"]["schemas"]
    create = paths["/v2/accounts/{account_id}/segments"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SegmentCreate"}
    assert schemas["SegmentCreate"]["required"] == ["name"]
    assert schemas["SegmentCreate"]["additionalProperties"] is False
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Segment"}
    assert list(schemas["Segment"]["properties"]) == [
        "created_at", "created_by", "description", "id", "name", "updated_at", "updated_by", "url",
    ]  # fmt: skip
    listing = paths["/v2/accounts/{account_id}/segments"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listing["schema"]["items"] == {"$ref": "#/components/schemas/Segment"}
    delete = paths["/v2/accounts/{account_id}/segments/{segment_id}"]["delete"]["responses"]["200"]
    assert delete["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/StatusOK"}
    assert set(schemas["Problem"]["properties"]) == {"type", "error", "status", "title", "detail"}


def test_profile_path_documents_user_id(document):
    operation = document["paths"]["/v2/accounts/{account_id}/users/{user_id}/profile"]["patch"]
    user_id = next(p for p in operation["parameters"] if p["name"] == "user_id")
    assert "%2F" in user_id["description"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ProfileUpdate"}


def test_bulk_upload_bodies_list_four_media_types():
    docs = openapi.SPEC_DOCS[("POST", "/segments/{}/add_user_ids")]
    assert set(docs.body) == {"application/json", "application/ndjson", "text/csv", "multipart/form-data"}
    assert docs.status == 202 and docs.response is openapi.Accepted


def test_shape_ignores_parameter_names_and_converters():
    assert openapi.shape("get", "/v2/accounts/{account_id}/users/{user_id:path}/profile") == ("GET", "/users/{}/profile")
    assert openapi.shape("POST", "/v2/accounts/{account_id}/jobs/{id}") == ("POST", "/jobs/{}")


def test_explicit_docs_win_over_the_spec_table():
    from opencues.web.routes import Route

    custom = openapi.Docs(openapi.Job, status=202)
    route = Route("GET", "/v2/accounts/{account_id}/flows", lambda: None, "x", "x", docs=custom)
    assert openapi.docs_for(route) is custom
    assert openapi.route_kwargs(route)["status_code"] == 202


def test_docs_page_serves_html(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


def test_documented_models_match_real_responses(db, api):
    """The models are documentation, never applied to responses: check they describe them."""
    from opencues import flows

    segment = api.post("segments", json={"name": "Docs"}).json()
    assert list(segment) == list(openapi.Segment.model_fields)
    openapi.Segment.model_validate(segment)
    flows.create_flow(db, api.creds.account_id, "Flow", flow_id="f1")
    flow = api.get("flows/f1").json()
    assert list(flow) == list(openapi.Flow.model_fields)
    openapi.Flow.model_validate(flow)
    problem = api.get("segments/missing").json()
    assert list(problem) == list(openapi.Problem.model_fields)
    assert api.delete(f"segments/{segment['id']}").json() == openapi.StatusOK().model_dump()


def test_job_creating_posts_document_idempotency_conflicts(document):
    operation = document["paths"]["/v2/accounts/{account_id}/import/events"]["post"]
    conflict = operation["responses"]["422"]
    assert "Idempotency-Key" in conflict["description"]
    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_download_links_document_their_errors(document):
    responses = document["paths"]["/downloads/{token}"]["get"]["responses"]
    for code in ("403", "404", "410"):
        assert responses[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "422" not in responses
def test_docs_page_works_offline(client):
    """No CDN: every script, style and icon the page loads is served by opencues itself."""
    import re

    html = client.get("/docs").text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"""url: ?["']([^"']+)["']""", html)
    assert assets and not [a for a in assets if "//" in a], assets
    assert "cdn" not in html.lower() and "https://" not in html.replace("https://swagger.io", "")
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
    assert "SwaggerUIBundle" in client.get("/docs/static/swagger-ui-bundle.js").text


def _bodies(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, "request", operation.get("requestBody", {}).get("content", {})
            for code, response in operation.get("responses", {}).items():
                yield path, method, code, response.get("content", {})


def test_every_request_and_response_body_has_a_valid_example(client):
    import jsonschema

    document = client.get("/openapi.json").json()
    checked = 0
    for path, method, code, content in _bodies(document):
        for media, entry in content.items():
            assert "example" in entry or "examples" in entry, f"{method.upper()} {path} {code} {media}: no example"
            if media == "application/json" and "schema" in entry:
                root = {**entry["schema"], "components": document["components"]}
                jsonschema.validate(entry["example"], root)  # the example is what the schema describes
                checked += 1
    assert checked > 100


def test_405_and_410_are_documented(client):
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "405" in operation["responses"], f"{method} {path}"
    download = document["paths"]["/downloads/{token}"]["get"]["responses"]
    assert download["410"]["content"]["application/json"]["example"]["status"] == 410
