"""Entry paths a person cannot tell apart are one path or none (docs/context.md, "Paths").

- The NFC and NFD spellings of a path are one entry, wherever a path enters: entry URLs,
  commit puts and deletes, the manifest's prefix.
- Characters that reorder or hide what a reader sees (bidirectional controls, invisible format
  characters, noncharacters, U+FEFF) are refused with 400 invalid_path naming the character
  and where it is; so is a segment that shows nothing. Real text (joiners in words, emoji
  sequences) is not.
- An entry stored under such a path before the rule can still be read and deleted.
- A PUT whose Content-Type is curl -d's default (a bare form type) gets the tenant's default.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
import regex

from ctxcloud.plugins.context.models import Entry, EntryVersion
from ctxcloud.plugins.context.paths import (
    PATH_PATTERN,
    REFUSED,
    SHAPING,
    is_invisible,
    needs_base,
    validate_path,
)
from tests.api.test_core import assert_problem
from tests.support.context import context_url, create_project, entry_url
from tests.support.factories import bearer, make_api_key

P = "p"
COMMITS = f"{context_url(P)}/commits"
NFC = unicodedata.normalize("NFC", "café/résumé.md")
NFD = unicodedata.normalize("NFD", "café/résumé.md")


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def project(client, auth) -> dict:
    return create_project(client, auth, name="Project", slug=P)


def put(client, auth, path, data=b"x", **headers):
    return client.put(entry_url(P, path), data=data, headers={**auth, **headers})


def paths(client, auth, **query) -> list[str]:
    response = client.get(context_url(P, **query), headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [entry["path"] for entry in response.get_json()["entries"]]


def commit(client, auth, **body):
    return client.post(COMMITS, json=body, headers=auth)


# NFC ---------------------------------------------------------------------------------------


def test_the_two_spellings_of_a_path_are_one_entry(client, auth, project):
    assert NFC != NFD
    created = put(client, auth, NFD, b"first")
    assert created.status_code == 201
    assert created.get_json()["path"] == NFC
    for spelling in (NFC, NFD):
        response = client.get(entry_url(P, spelling), headers=auth)
        assert response.status_code == 200 and response.data == b"first"
    assert paths(client, auth) == [NFC]

    assert put(client, auth, NFC, b"second").status_code == 200  # replaced, not a second entry
    refused = put(client, auth, NFD, b"third", **{"If-None-Match": "*"})
    assert_problem(refused, 412, "precondition_failed")
    assert client.get(entry_url(P, NFD), headers=auth).data == b"second"
    assert paths(client, auth) == [NFC]

    assert client.delete(entry_url(P, NFD), headers=auth).status_code == 204
    assert client.get(entry_url(P, NFC), headers=auth).status_code == 404
    assert paths(client, auth) == []


def test_a_commit_holding_both_spellings_is_a_duplicate(client, auth, project):
    response = commit(
        client,
        auth,
        put=[{"path": NFC, "content": "a"}, {"path": NFD, "content": "b"}],
    )
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]["paths"]) == [NFC]
    assert paths(client, auth) == []

    put(client, auth, NFC)
    both = commit(client, auth, put=[{"path": NFD, "content": "b"}], delete=[NFC])
    assert_problem(both, 422, "validation_error")


def test_commits_store_and_record_the_nfc_spelling(client, auth, project):
    created = commit(client, auth, put=[{"path": NFD, "content": "a"}])
    assert created.status_code == 201
    assert created.get_json()["changes"] == [{"path": NFC, "action": "put"}]
    assert paths(client, auth) == [NFC]
    deleted = commit(client, auth, delete=[NFD])  # the other spelling names the same entry
    assert deleted.status_code == 201
    assert deleted.get_json()["changes"] == [{"path": NFC, "action": "delete"}]
    assert paths(client, auth) == []


def test_the_manifest_prefix_is_normalised_too(client, auth, project):
    put(client, auth, NFC)
    put(client, auth, "other.md")
    assert paths(client, auth, prefix=unicodedata.normalize("NFD", "café/")) == [NFC]
    assert paths(client, auth, prefix=unicodedata.normalize("NFD", "café")) == [NFC]


# Refused characters -----------------------------------------------------------------------

NAMED = {
    "\u202e": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "\u202a": "U+202A LEFT-TO-RIGHT EMBEDDING",
    "\u2066": "U+2066 LEFT-TO-RIGHT ISOLATE",
    "\u2069": "U+2069 POP DIRECTIONAL ISOLATE",
    "\u200e": "U+200E LEFT-TO-RIGHT MARK",
    "\u200f": "U+200F RIGHT-TO-LEFT MARK",
    "\u061c": "U+061C ARABIC LETTER MARK",
    "\ufeff": "U+FEFF ZERO WIDTH NO-BREAK SPACE",
    "\ufdd0": "U+FDD0 <noncharacter-FDD0>",
    "\ufffe": "U+FFFE <noncharacter-FFFE>",
    "\uffff": "U+FFFF <noncharacter-FFFF>",
    "\U0001ffff": "U+1FFFF <noncharacter-1FFFF>",
    "\U0010fffe": "U+10FFFE <noncharacter-10FFFE>",
    "\u200b": "U+200B ZERO WIDTH SPACE",
    "\u2060": "U+2060 WORD JOINER",
    "\u00ad": "U+00AD SOFT HYPHEN",
    "\u3164": "U+3164 HANGUL FILLER",
    "\u0085": "U+0085 <control-0085>",
    "\u2028": "U+2028 LINE SEPARATOR",
    "\U000e0001": "U+E0001 LANGUAGE TAG",
}


@pytest.mark.parametrize("char", NAMED, ids=list(NAMED.values()))
def test_refused_characters_are_named_with_where_they_are(client, auth, project, char):
    path = f"docs/in{char}voice.pdf"  # character 8, segment 2
    where = f"{NAMED[char]} at character 8 (segment 2)"
    for response in (
        put(client, auth, path),
        client.get(entry_url(P, path), headers=auth),
        client.delete(entry_url(P, path), headers=auth),
        commit(client, auth, put=[{"path": path, "content": "x"}]),
        commit(client, auth, delete=[path]),
    ):
        body = assert_problem(response, 400, "invalid_path")
        assert where in body["detail"]
        assert char not in body["detail"]  # named, never echoed raw
    assert client.head(entry_url(P, path), headers=auth).status_code == 400
    assert paths(client, auth) == []


@pytest.mark.parametrize(
    "path,detail",
    [
        (" ", "Segment 1 of the entry path holds only invisible characters (U+0020 SPACE)"),
        ("a/\u00a0\u3000", "Segment 2 of the entry path holds only invisible characters"),
        ("\u2800", "(U+2800 BRAILLE PATTERN BLANK)"),
        ("\u115f\u1160/x", "Segment 1 of the entry path holds only invisible characters"),
        ("a/\u200d", "Segment 2 of the entry path begins with U+200D ZERO WIDTH JOINER"),
        ("\u200c", "begins with U+200C ZERO WIDTH NON-JOINER"),
        ("a/\ufe0f.md", "begins with U+FE0F VARIATION SELECTOR-16"),
        ("docs/\u0338x.md", "begins with U+0338 COMBINING LONG SOLIDUS OVERLAY"),
        ("a/\u0301", "begins with U+0301 COMBINING ACUTE ACCENT"),
    ],
)
def test_segments_that_show_nothing_are_refused(client, auth, project, path, detail):
    for response in (put(client, auth, path), commit(client, auth, delete=[path])):
        assert detail in assert_problem(response, 400, "invalid_path")["detail"]
    assert paths(client, auth) == []


@pytest.mark.parametrize(
    "path",
    [
        "क्\u200dष/नोट.md",  # ZWJ in a Devanagari conjunct
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt",  # ZWNJ in Persian (mi-khaham)
        "family/👨\u200d👩\u200d👧.md",  # an emoji ZWJ sequence
        "flags/🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f.md",  # tag sequence
        "❤\ufe0f.txt",  # emoji presentation selector
        "葛\U000e0100.txt",  # an ideographic variation sequence
        "ᠠ\u180b.txt",  # a Mongolian variation selector
        "ᄀ\u1161/x",  # conjoining jamo (NFC composes them)
        "مرحبا/שלום/привет/日本語.md",
        "a b/tab name.md",
        "\u115f\u1161.txt",  # a syllable without an initial consonant
    ],
)
def test_real_text_is_accepted(client, auth, project, path):
    created = put(client, auth, path, path.encode())
    assert created.status_code == 201, created.get_data(as_text=True)
    stored = unicodedata.normalize("NFC", path)
    assert created.get_json()["path"] == stored
    assert client.get(entry_url(P, path), headers=auth).data == path.encode()
    assert paths(client, auth) == [stored]


def test_an_entry_stored_before_the_rule_can_still_be_read_and_deleted(app, client, auth, project):
    legacy = "invoice\u202efdp.exe"
    put(client, auth, "placeholder", b"old bytes")
    put(client, auth, "placeholder-2", b"more")
    with app.app_context():  # as a path written before the character rules existed
        for model in (Entry, EntryVersion):
            model.update(path=legacy).where(model.path == "placeholder").execute()
        EntryVersion.update(path=legacy + "2").where(EntryVersion.path == "placeholder-2").execute()
        Entry.update(path=legacy + "2").where(Entry.path == "placeholder-2").execute()

    assert client.get(entry_url(P, legacy), headers=auth).data == b"old bytes"
    assert client.head(entry_url(P, legacy), headers=auth).status_code == 200
    assert client.get(entry_url(P, legacy, revision=1), headers=auth).status_code == 200
    assert_problem(put(client, auth, legacy, b"new"), 400, "invalid_path")  # never written again
    assert_problem(
        commit(client, auth, put=[{"path": legacy, "content": "x"}]), 400, "invalid_path"
    )
    assert client.delete(entry_url(P, legacy), headers=auth).status_code == 204
    assert commit(client, auth, delete=[legacy + "2"]).status_code == 201
    # Gone now: the path is refused again, as any path the rule refuses.
    assert_problem(client.get(entry_url(P, legacy), headers=auth), 400, "invalid_path")
    assert_problem(client.delete(entry_url(P, legacy), headers=auth), 400, "invalid_path")
    assert_problem(commit(client, auth, delete=[legacy]), 400, "invalid_path")
    assert paths(client, auth) == []


# The rule against Unicode's own character properties ---------------------------------------


def _refused(char: str) -> bool:
    try:
        validate_path(f"a{char}b")
    except Exception:
        return True
    return False


def test_every_bidi_control_noncharacter_and_ignorable_is_refused_or_shapes_text():
    """The tables in paths.py against Unicode's properties (from the `regex` module, whose
    Unicode data is newer than Python's own)."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    shaping = {chr(c) for first, last in SHAPING for c in range(first, last + 1)}
    always = r"[\p{Bidi_Control}\p{Noncharacter_Code_Point}\p{Cc}]"
    for char in regex.findall(always, everything):
        assert _refused(char), f"U+{ord(char):04X}"
    ignorable = regex.findall(r"\p{Default_Ignorable_Code_Point}", everything)
    for char in ignorable:
        assert _refused(char) != (char in shaping), f"U+{ord(char):04X}"
    # Nothing else is refused but line separators and the interlinear annotation characters.
    extra = set(regex.findall(always, everything)) | set(ignorable) | set("\u2028\u2029")
    extra |= set("\ufff9\ufffa\ufffb")
    for first, last, _ in REFUSED:
        for code in range(first, last + 1):
            assert chr(code) in extra, f"U+{code:04X}"
    # What shapes text is invisible: it never stands alone, nor starts a segment.
    for char in shaping:
        assert is_invisible(char) and _refused_path(char)
        assert needs_base(char) or char in "\u115f\u1160"


def _refused_path(path: str) -> bool:
    try:
        validate_path(path)
    except Exception:
        return True
    return False


# The OpenAPI pattern ------------------------------------------------------------------------


def test_the_documented_pattern_says_what_a_regular_expression_can(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/projects/{project}/context/entries/{path}"]
    schema = next(p for p in operation["parameters"] if p["name"] == "path")["schema"]
    assert schema["pattern"] == PATH_PATTERN and schema["maxLength"] == 1024
    commit_item = spec["components"]["schemas"]["CommitPut"]["properties"]["path"]
    assert commit_item["pattern"] == PATH_PATTERN
    pattern = re.compile(PATH_PATTERN)
    assert "(?=" not in PATH_PATTERN and "(?!" not in PATH_PATTERN  # portable: no lookaround
    for good in ("a", "docs/adr/0001.md", ".env", "...", "a..b/c.", NFC, "q?x=1#frag"):
        assert pattern.search(good), good
        assert validate_path(good)
    for bad in ("", "/a", "a/", "a//b", ".", "..", "a/./b", "../a", "a\\b", "a\x00b", "a\x85b"):
        assert not pattern.search(bad), repr(bad)
        assert _refused_path(bad), repr(bad)
    assert not pattern.search("a\u202eb")  # refusals in the BMP are in the pattern too


# Content-Type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        "application/x-www-form-urlencoded",  # what `curl -d` / `--data-binary` send unasked
        "Application/X-WWW-Form-URLEncoded",
        " application/x-www-form-urlencoded ",
    ],
)
def test_curl_ds_default_content_type_counts_as_none(client, auth, project, sent):
    data = b"# Notes\n\na=1&b=2\n"
    created = put(client, auth, "notes.md", data, **{"Content-Type": sent})
    assert created.status_code == 201
    assert created.get_json()["content_type"] == "application/octet-stream"
    response = client.get(entry_url(P, "notes.md"), headers=auth)
    assert response.data == data
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_curl_ds_default_gets_the_tenants_default_type(client, auth, project):
    settings = client.patch(
        "/api/v1/tenant/settings", json={"default_content_type": "text/markdown"}, headers=auth
    )
    assert settings.status_code == 200, settings.get_data(as_text=True)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert put(client, auth, "a.md", b"# A\n", **form).get_json()["content_type"] == "text/markdown"


def test_the_form_type_with_a_parameter_is_kept_as_meant(client, auth, project):
    sent = "application/x-www-form-urlencoded; charset=utf-8"
    created = put(client, auth, "query.txt", b"a=1&b=2", **{"Content-Type": sent})
    assert created.get_json()["content_type"] == sent
    assert client.get(entry_url(P, "query.txt"), headers=auth).headers["Content-Type"] == sent
