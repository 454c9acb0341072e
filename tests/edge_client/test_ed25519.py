"""The pure-Python Ed25519 verifier agrees with libsodium and with RFC 8032's test vectors."""
import os

import pytest
from nacl.signing import SigningKey

from edge_client.ed25519 import verify, verify_nacl, verify_pure

# RFC 8032 section 7.1, tests 1-3: (public key, message, signature)
RFC_VECTORS = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


@pytest.mark.parametrize("pub,msg,sig", RFC_VECTORS)
def test_rfc8032_vectors(pub, msg, sig):
    pub, msg, sig = bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig)
    assert verify_pure(pub, msg, sig) and verify_nacl(pub, msg, sig)
    bad = bytearray(sig)
    bad[0] ^= 1
    assert not verify_pure(pub, msg, bytes(bad)) and not verify_nacl(pub, msg, bytes(bad))


def test_agrees_with_libsodium_on_valid_and_tampered_inputs():
    for i in range(12):
        sk = SigningKey(os.urandom(32))
        pub, msg = bytes(sk.verify_key), os.urandom(i * 37)
        sig = sk.sign(msg).signature
        cases = [(pub, msg, sig), (pub, msg + b"x", sig), (pub, msg, sig[:63] + bytes([sig[63] ^ 0x10])),
                 (bytes(SigningKey.generate().verify_key), msg, sig),
                 (pub, msg, sig[:32] + (int.from_bytes(sig[32:], "little") + 2**252 + 27742317777372353535851937790883648493).to_bytes(32, "little")),
                 (b"\x00" * 32, msg, sig), (pub[:31], msg, sig), (pub, msg, sig[:63])]
        got = [(verify_pure(*c), verify_nacl(*c)) for c in cases]
        assert got[0] == (True, True)
        assert all(p == n for p, n in got), got
        assert not any(p for p, _ in got[1:])
    assert verify(pub, msg, sig, backend="auto") and verify(pub, msg, sig, backend="pure")
    with pytest.raises(ValueError):
        verify(pub, msg, sig, backend="rsa")
