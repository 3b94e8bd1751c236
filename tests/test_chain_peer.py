"""The signed chain's canonical form, digests and signatures against a peer implementation
(tests/peer_chain.py: RFC 8785 and RFC 8032 from the RFCs, no project code, no crypto package).

The device and the centre both use contract/chain.py, so a mistake there would agree with
itself on both sides; the peer does not share it. See docs/tamper.md "Signed chains".
"""

from __future__ import annotations

import base64
import copy

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from central.seal.leaf import fast_canonical
from contract import chain
from tests import peer_chain as peer

# RFC 8785 §3.2.2.3's sample and its canonical form, byte for byte.
RFC8785_INPUT = {
    "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
    "literals": [None, True, False],
}
RFC8785_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
).encode()

# RFC 8032 §7.1, TEST 1 (the empty message).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

EVENT = {
    "id": "0193a5c2-7b1e-7c3a-9a4e-3f1d2b6c8e01",
    "seq": 1842,
    "type": "rating.submitted",
    "at": "2026-11-26T09:12:03.120+08:00",
    "clock": "synced",
    "device": "pad-a03",
    "site": "jiedong",
    "data": {
        "window": "A03",
        "pad": 1,
        "staff_id": "S001",
        "level": 2,
        "label": "不满意",
        "reasons": ["态度不好", "等候时间长"],
        "invite_id": None,
        "case_no": "揭东〔2026〕第0012号",
        "item_code": None,
    },
}


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_both_encoders_give_rfc8785s_own_sample_byte_for_byte():
    assert peer.canonical(RFC8785_INPUT) == RFC8785_OUTPUT
    assert chain.canonical(RFC8785_INPUT) == RFC8785_OUTPUT
    assert fast_canonical(RFC8785_INPUT) == RFC8785_OUTPUT


def test_the_peers_ed25519_gives_rfc8032s_own_vector_and_the_package_agrees():
    assert peer.public_key(RFC8032_SECRET) == RFC8032_PUBLIC
    assert peer.sign(RFC8032_SECRET, b"") == RFC8032_SIG
    assert peer.verify(RFC8032_PUBLIC, b"", RFC8032_SIG)
    assert not peer.verify(RFC8032_PUBLIC, b"x", RFC8032_SIG)
    package = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert package.sign(b"") == RFC8032_SIG


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_the_projects_encoders_agree_with_the_peer_on_any_json(value):
    expected = peer.canonical(value)
    assert chain.canonical(value) == expected
    assert fast_canonical(value) == expected


def test_a_signature_the_project_makes_checks_under_the_peer():
    key = Ed25519PrivateKey.generate()
    event = dict(EVENT, prev=chain.GENESIS)
    event["sig"] = chain.sign(key, event)
    public = _raw_public(key)
    signature = base64.b64decode(event["sig"], validate=True)
    assert peer.signing_input(event) == chain.signing_input(event)
    assert peer.verify(public, peer.signing_input(event), signature)
    assert chain.digest(event) == peer.digest(event)
    changed = copy.deepcopy(event)
    changed["data"]["level"] = 5
    assert not peer.verify(public, peer.signing_input(changed), signature)


def test_a_signature_the_peer_makes_checks_under_the_project_and_a_change_fails():
    secret = bytes(range(32))
    event = dict(EVENT, prev="ab" * 32)
    event["sig"] = base64.b64encode(peer.sign(secret, peer.signing_input(event))).decode()
    key = chain.public_key(peer.public_key(secret))
    assert chain.verify(key, event)
    for field, value in (
        ("seq", 1843),
        ("prev", chain.GENESIS),
        ("at", "2026-11-26T09:12:04.120+08:00"),
    ):
        assert not chain.verify(key, dict(event, **{field: value})), field
    moved = copy.deepcopy(event)
    moved["data"]["staff_id"] = "S002"
    assert not chain.verify(key, moved)
