"""The bulk intake: every accepted form is stored verbatim and durably, everything else is a 4xx."""

import hashlib
from pathlib import Path

import pytest
from starlette.requests import Request

from opencues.settings import Settings
from opencues.web.dispatch import DirectRoute
from opencues.web.intake import receive_payload
from opencues.web.responses import json_response
from tests.conftest import assert_problem
from tests.in_process_client import InProcessClient

BODY_LIMIT = 1_000
UPLOAD_LIMIT = 5_000


async def _intake_view(request: Request):
    stored = await receive_payload(request, user_ids=request.query_params.get("user_ids") == "1")
    return json_response({"key": stored.key, "format": stored.format.value, "size": stored.size, "sha256": stored.sha256})


@pytest.fixture
def intake(tmp_path):
    """A client of an app with one extra route that runs ``receive_payload`` (no database needed)."""
    from opencues.web.app import create_app

    settings = Settings(data_dir=tmp_path / "data", max_body_bytes=BODY_LIMIT, max_upload_bytes=UPLOAD_LIMIT)
    app = create_app(settings)
    app.router.routes.append(DirectRoute("/_intake", _intake_view, "POST"))
    with InProcessClient(app) as client:
        client.files_root = Path(settings.data_dir) / "files"
        yield client


def stored_files(client) -> list[Path]:
    return sorted(p for p in client.files_root.rglob("*") if p.is_file())


def assert_stored(client, response, fmt: str, content: bytes) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == fmt
    assert body["key"].startswith("uploads/") and body["key"].endswith("." + fmt)
    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    path = client.files_root / body["key"]
    assert path.read_bytes() == content
    assert stored_files(client) == [path]  # no partial file left beside it
    return body


NDJSON = b'{"user_id": "a", "email": "a@example.com"}\n\n{"user_id": "b"}\n'
CSV = b"user_id,email\na,a@example.com\n"


# ---------------------------------------------------------------- plain bodies


@pytest.mark.parametrize(
    "content_type, fmt, content",
    [
        ("application/ndjson", "ndjson", NDJSON),
        ("Application/X-NDJSON; charset=utf-8", "ndjson", NDJSON),
        ("application/jsonl", "ndjson", NDJSON),
        ("text/csv", "csv", CSV),
        ("TEXT/CSV; charset=UTF-8; header=present", "csv", CSV),
        ("application/json", "json", b'[{"user_id": "a"}, {"user_id": "b"}]'),
        ("application/json", "json", b'{"user_id": "a"}'),
    ],
)
def test_plain_bodies_are_stored_verbatim(intake, content_type, fmt, content):
    response = intake.post("/_intake", content=content, headers={"Content-Type": content_type})
    assert_stored(intake, response, fmt, content)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_other_content_types_are_415_naming_sent_and_accepted(intake, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = intake.post("/_intake", content=NDJSON, headers=headers)
    body = assert_problem(response, 415, "text/csv")
    assert (content_type or "no Content-type") in body["detail"]
    assert stored_files(intake) == []


@pytest.mark.parametrize("content", [b"", b"  \n\n\t"])
def test_an_empty_body_is_400(intake, content):
    response = intake.post("/_intake", content=content, headers={"Content-Type": "application/ndjson"})
    assert_problem(response, 400, "empty")
    assert stored_files(intake) == []


def test_a_body_over_the_limit_is_413_from_content_length(intake):
    response = intake.post("/_intake", content=b"x" * (BODY_LIMIT + 1), headers={"Content-Type": "text/csv"})
    assert_problem(response, 413, str(BODY_LIMIT))
    assert stored_files(intake) == []


def test_a_chunked_body_over_the_limit_is_413_while_streaming(intake):
    sent = []

    def chunks():  # no Content-Length: only counting while streaming can catch it
        for _ in range(50):
            sent.append(1)
            yield b"a,b\n" * 25

    response = intake.post("/_intake", content=chunks(), headers={"Content-Type": "text/csv"})
    assert_problem(response, 413, str(BODY_LIMIT))
    assert stored_files(intake) == []  # the partial file is removed


def test_a_body_exactly_at_the_limit_is_accepted(intake):
    content = (b"x" * 99 + b"\n") * (BODY_LIMIT // 100)
    assert_stored(intake, intake.post("/_intake", content=content, headers={"Content-Type": "text/csv"}), "csv", content)


@pytest.mark.parametrize(
    "content, mentions",
    [
        (b'{"user_id": ', "not valid JSON"),
        (b'"just a string"', "JSON object or an array"),
        (b"42", "JSON object or an array"),
    ],
)
def test_json_bodies_must_be_an_object_or_array(intake, content, mentions):
    response = intake.post("/_intake", content=content, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, mentions)
    assert stored_files(intake) == []


def test_json_user_ids_body_is_accepted(intake):
    content = b'{"user_ids": ["some-id-here", "another-user-id"]}'
    response = intake.post("/_intake?user_ids=1", content=content, headers={"Content-Type": "application/json"})
    assert_stored(intake, response, "json", content)


@pytest.mark.parametrize(
    "content, mentions",
    [
        (b'["a", "b"]', "`user_ids` is required"),
        (b'{"ids": ["a"]}', "`user_ids` is required"),
        (b'{"user_ids": "a"}', "`user_ids` must be an array"),
        (b'{"user_ids": ["a", 2]}', "`user_ids[1]`"),
    ],
)
def test_json_user_ids_body_is_checked(intake, content, mentions):
    response = intake.post("/_intake?user_ids=1", content=content, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, mentions)
    assert stored_files(intake) == []


# ---------------------------------------------------------------- file uploads


@pytest.mark.parametrize(
    "filename, part_type, fmt",
    [
        ("data.csv", "text/csv", "csv"),
        ("data.ndjson", "application/octet-stream", "ndjson"),
        ("data.jsonl", "text/plain", "ndjson"),
        ("data.txt", "application/x-ndjson", "ndjson"),
        ("DATA.CSV", None, "csv"),
    ],
)
def test_an_uploaded_file_is_stored_with_its_format(intake, filename, part_type, fmt):
    content = CSV if fmt == "csv" else NDJSON
    upload = (filename, content, part_type) if part_type else (filename, content)
    response = intake.post("/_intake", files={"file": upload})
    assert_stored(intake, response, fmt, content)


def test_an_upload_may_exceed_the_plain_body_limit(intake):
    content = b"user_id\n" + b"someone-with-an-id\n" * ((UPLOAD_LIMIT - 100) // 19)
    assert len(content) > BODY_LIMIT
    response = intake.post("/_intake", files={"file": ("ids.csv", content, "text/csv")})
    assert_stored(intake, response, "csv", content)


def test_form_fields_are_ignored_and_the_part_named_file_wins(intake):
    response = intake.post(
        "/_intake",
        data={"note": "hello"},
        files=[("other", ("other.csv", b"user_id\nx\n", "text/csv")), ("file", ("real.ndjson", NDJSON, None))],
    )
    assert_stored(intake, response, "ndjson", NDJSON)


def test_without_a_file_part_the_first_part_with_a_filename_is_taken(intake):
    response = intake.post(
        "/_intake",
        files=[("upload", ("a.csv", CSV, "text/csv")), ("second", ("b.ndjson", NDJSON, None))],
    )
    assert_stored(intake, response, "csv", CSV)


def multipart_body(boundary: str, parts: list[tuple[list[str], bytes]], close: bool = True) -> bytes:
    out = b""
    for headers, content in parts:
        out += f"--{boundary}\r\n".encode() + "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + content + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out


def test_multipart_mixed_takes_the_unnamed_part(intake):
    body = multipart_body("XyZ", [(["Content-Type: application/ndjson"], NDJSON)])
    response = intake.post("/_intake", content=body, headers={"Content-Type": "multipart/mixed; boundary=XyZ"})
    assert_stored(intake, response, "ndjson", NDJSON)


def test_an_upload_whose_format_cannot_be_told_is_415(intake):
    response = intake.post("/_intake", files={"file": ("data.txt", NDJSON, "text/plain")})
    body = assert_problem(response, 415, "data.txt")
    assert ".csv" in body["detail"]
    assert stored_files(intake) == []


@pytest.mark.parametrize(
    "content_type, body, mentions",
    [
        ("multipart/form-data", b"--x\r\n\r\n", "boundary"),
        ("multipart/form-data; boundary=XyZ", b"", "no parts"),
        ("multipart/form-data; boundary=XyZ", b"just some bytes", "malformed multipart"),
        (
            "multipart/form-data; boundary=XyZ",
            multipart_body("XyZ", [(['Content-Disposition: form-data; name="file"; filename="a.csv"'], CSV)], close=False),
            "closing boundary",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            multipart_body("XyZ", [(['Content-Disposition: form-data; name="note"'], b"hello")]),
            "no file part",
        ),
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno-colon-header\r\n\r\n", "malformed multipart"),
    ],
)
def test_broken_multipart_is_400(intake, content_type, body, mentions):
    response = intake.post("/_intake", content=body, headers={"Content-Type": content_type})
    assert_problem(response, 400, mentions)
    assert stored_files(intake) == []


def test_an_empty_uploaded_file_is_400(intake):
    response = intake.post("/_intake", files={"file": ("a.csv", b"", "text/csv")})
    assert_problem(response, 400, "empty")
    assert stored_files(intake) == []


def test_an_uploaded_file_over_the_limit_is_413_and_removed(intake):
    content = b"a\n" * (UPLOAD_LIMIT // 2 + 1)
    response = intake.post("/_intake", files={"file": ("a.csv", content, "text/csv")})
    assert_problem(response, 413, str(UPLOAD_LIMIT))
    assert stored_files(intake) == []


def test_an_uploaded_json_file_is_parsed_so_is_held_to_the_body_limit(intake):
    content = b'{"user_ids": [' + b",".join(b'"id-%04d"' % i for i in range(200)) + b"]}"
    assert BODY_LIMIT < len(content) < UPLOAD_LIMIT
    response = intake.post("/_intake?user_ids=1", files={"file": ("ids.json", content, "application/json")})
    assert_problem(response, 413, str(BODY_LIMIT))
    small = b'{"user_ids": ["a", "b"]}'
    response = intake.post("/_intake?user_ids=1", files={"file": ("ids.json", small, "application/json")})
    assert_stored(intake, response, "json", small)


def test_an_uploaded_json_file_is_checked_like_a_body(intake):
    response = intake.post("/_intake?user_ids=1", files={"file": ("ids.json", b'{"user_ids": [1]}', "application/json")})
    assert_problem(response, 400, "`user_ids[0]`")
