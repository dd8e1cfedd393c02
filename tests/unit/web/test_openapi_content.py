"""The documented models of the content endpoints describe the real responses, field for field."""

import pytest

from opencues import content, experiences
from opencues.web import openapi


def _model(resource: str):
    if resource == "checklists":
        return openapi.Checklist
    return openapi.ThemedExperience if resource in ("pins", "banners") else openapi.Experience


@pytest.fixture
def demo(db, api):
    content.import_content(db, api.creds.account_id, content.demo_content())


@pytest.mark.parametrize("resource", experiences.TYPES)
def test_experience_models_match_real_responses(api, demo, resource):
    item = api.get(f"{resource}/demo-{resource}").json()
    model = _model(resource)
    assert list(item) == list(model.model_fields)
    model.model_validate(item)


def test_tag_and_sdk_key_models_match_real_responses(api, demo):
    tag = api.get("tags/tag-onboarding").json()
    assert list(tag) == list(openapi.Tag.model_fields)
    openapi.Tag.model_validate(tag)
    created = api.post("sdk_keys", json={"name": "k"}).json()
    assert list(created) == list(openapi.SdkKeyWithSecret.model_fields)
    shown = api.get(f"sdk_keys/{created['id']}").json()
    assert list(shown) == list(openapi.SdkKey.model_fields)
    openapi.SdkKey.model_validate(shown)


def test_the_sdk_key_bodies_are_documented_by_the_validating_models(client):
    from opencues import sdk_keys

    document = client.get("/openapi.json").json()
    create = document["paths"]["/v2/accounts/{account_id}/sdk_keys"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SdkKeyCreate"}
    assert document["components"]["schemas"]["SdkKeyCreate"]["required"] == ["name"]
    assert openapi.SPEC_DOCS[("POST", "/sdk_keys")].body["application/json"] is sdk_keys.SdkKeyCreate
    shots = document["paths"]["/v2/accounts/{account_id}/screenshots/{resource_id}"]["get"]["responses"]["200"]
    assert set(shots["content"]) == {"application/zip"}
