"""Issue 12, item 3: a Sign-In with Ethereum challenge rewritten before signing is refused."""

from __future__ import annotations

from eth_account.messages import encode_defunct
from liandong.devtools.simulate import dev_account

from tests.api.conftest import Api


def test_siwe_challenge_rewritten_to_another_uri_or_any_other_line_is_refused(api: Api) -> None:
    wallet = dev_account(6)

    def attempt(rewrite: tuple[str, str] | None) -> int:
        challenge = api.client.post("/api/buyer/challenge", json={"address": wallet.address}).json()
        message: str = challenge["message"]
        if rewrite is not None:
            assert rewrite[0] in message
            message = message.replace(*rewrite)
        signature = wallet.sign_message(encode_defunct(text=message)).signature
        answer = api.client.post(
            "/api/buyer/session", json={"message": message, "signature": "0x" + signature.hex()}
        )
        return answer.status_code

    rewrites = [
        ("URI: http://shop.test", "URI: https://evil.example"),  # the attack of the issue
        ("URI: http://shop.test", "URI: http://shop.test/elsewhere"),
        ("shop.test wants", "https://shop.test wants"),  # a scheme added
        ("Sign in to read", "Sign in to hand over"),  # the statement
        ("Issued At: ", "Issued At: 2020-01-01T00:00:00Z\nNot Before: "),  # an extra line
    ]
    for rewrite in rewrites:
        assert attempt(rewrite) == 401, rewrite
    assert attempt(None) == 200  # the message as issued, signed unchanged
