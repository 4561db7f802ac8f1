"""The API documents itself: OpenAPI 3.1 with every route, and a docs page that works offline."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from swagger_ui_bundle import swagger_ui_path
from web_support import Front

from vareon_runtime import __version__
from vareon_runtime.auth import Role
from web.permissions import PUBLIC, route_access

# /metrics is left out of the API document: Prometheus text, checked by its own rules.
DOCS_ROUTES = {"/openapi.json", "/asyncapi.json", "/docs", "/docs/", "/docs/static/<path:filename>", "/metrics"}


async def test_openapi_is_3_1_and_lists_every_route_with_its_security(
    client: httpx.AsyncClient, front: Front
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] == "Vareon Runtime"
    assert document["info"]["version"] == __version__
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }

    listed = 0
    for rule, method, access in route_access(front.app):
        if method == "WEBSOCKET" or rule in DOCS_ROUTES:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
        assert method.lower() in document["paths"].get(path, {}), f"{method} {path} not in OpenAPI"
        operation = document["paths"][path][method.lower()]
        if access == PUBLIC:
            assert operation["security"] == [], f"{method} {path} is public"
        else:
            assert isinstance(access, Role)
            assert {"bearer": []} in operation["security"], f"{method} {path} needs a token"
            assert operation["x-required-role"] == access.value
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }
        listed += 1
    assert listed >= 8


async def test_token_endpoint_documents_form_and_json(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    content = document["paths"]["/api/token"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/x-www-form-urlencoded", "application/json"}
    schema = content["application/json"]["schema"]
    assert {"username", "password"} <= set(schema["properties"])


async def test_docs_page_uses_only_local_assets_and_they_are_served(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    # Nothing loads from another host: an edge box is often offline.
    assert "http://" not in html and "https://" not in html and 'src="//' not in html
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(urls) >= 2
    for url in urls:
        assert url.startswith("/docs/static/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        kind = "javascript" if url.endswith(".js") else "css"
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
    assert '"/openapi.json"' in html


def test_the_bundled_swagger_ui_renders_openapi_3_1() -> None:
    # Swagger UI reads OpenAPI 3.1 from version 5 on; 4.x shows "Unable to render this definition".
    found = re.fullmatch(r"swagger-ui-(\d+)\.(\d+)\.(\d+)", Path(str(swagger_ui_path)).name)
    assert found is not None and int(found.group(1)) >= 5


async def test_operations_with_a_body_document_its_refusals(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path in ("/api/register", "/api/token", "/api/token/refresh", "/api/verify-email"):
        responses = document["paths"][path]["post"]["responses"]
        assert {"400", "413", "415", "422"} <= set(responses), path
        assert responses["415"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
