"""What a device takes from an invitation and from the hub's answer to it, checked at the door,
and a live wake's page that a round passed already."""

from __future__ import annotations

import json

import pytest

from server.sync.hub_settings import PairingFailed, _answer, parse_invitation
from server.sync.wake import held as _held

CODE = "csi_" + "a" * 32


@pytest.mark.parametrize("text", [f"coursesync://hub.example.org/é#{CODE}", f"coursesync://hub exa.org#{CODE}",
                                  f"coursesync://hub.example.org#{CODE}#x"])
def test_an_invitation_of_more_than_plain_address_characters_is_refused_as_one(text):
    with pytest.raises(PairingFailed) as refused:
        parse_invitation(text)
    assert (refused.value.status, refused.value.code) == (400, "invalid_invitation")


@pytest.mark.parametrize("data", [
    {"userId": "learner", "deviceId": "hd_1", "token": "csh_" + "x" * 40 + "\r\nX-Evil: 1"},
    {"userId": "learner", "deviceId": "hd_1", "token": "short"},
    {"userId": "../../etc", "deviceId": "hd_1", "token": "csh_" + "x" * 40},
    {"userId": "learner", "deviceId": "", "token": "csh_" + "x" * 40},
])
def test_a_hubs_answer_that_is_not_a_user_a_device_and_a_token_is_not_a_hubs(data):
    with pytest.raises(PairingFailed) as refused:
        _answer("https://hub.example.org", 200, json.dumps({"data": data}).encode())
    assert (refused.value.status, refused.value.code) == (502, "not_a_hub")
    good = {"userId": "learner", "deviceId": "hd_1", "token": "csh_" + "x" * 40}
    assert _answer("https://hub.example.org", 200, json.dumps({"data": good}).encode()) == good


def test_only_a_change_numbered_at_or_below_the_cursor_counts_as_held():
    cursor = {"o": 3}
    assert _held(cursor, {"origin": "o", "seq": 3}) and not _held(cursor, {"origin": "o", "seq": 4})
    for odd in ({"origin": "o", "seq": True}, {"origin": "o", "seq": 0}, {"origin": 1, "seq": 1}, "x", None):
        assert not _held(cursor, odd), odd
