"""The API document says every answer an operation gives, and its examples point nowhere real
(fuzzers and users copy them)."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import httpx
import pytest
from web_support import DOMAINS

from vareon_runtime.component import Component


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return DOMAINS


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


async def test_every_operation_with_an_id_documents_404_and_every_protected_change_409(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        if "{" in path:
            assert "404" in responses, (method, path)
        if operation["security"]:
            assert {"401", "403", "503"} <= set(responses), (method, path)
            if method != "get":
                assert "409" in responses, (method, path)


async def test_a_delete_documents_its_204_and_no_body(document: dict[str, Any]) -> None:
    for path in ("/api/myntrix/agents/{agent_id}", "/api/myntrix/devices/{device_id}", "/api/myntrix/tasks/{task_id}"):
        responses = document["paths"][path]["delete"]["responses"]
        assert "204" in responses and "200" not in responses, path
        assert "content" not in responses["204"]


async def test_sign_in_documents_its_401_and_429(document: dict[str, Any]) -> None:
    for path in ("/api/token", "/api/token/refresh"):
        assert {"401", "429"} <= set(document["paths"][path]["post"]["responses"]), path
    assert {"409", "429"} <= set(document["paths"]["/api/register"]["post"]["responses"])


async def test_an_upload_documents_its_multipart_body(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/myntrix/devices/{device_id}/upload"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["file"] == {"type": "string", "format": "binary", "description": "The file."}
    assert {"413", "415"} <= set(operation["responses"])


async def test_no_example_names_an_address_off_this_host(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for found in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text):
        try:
            address = ipaddress.ip_address(found)
        except ValueError:
            continue
        assert address.is_loopback or address.is_unspecified, found
