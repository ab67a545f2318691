"""Alert and digest emails as a real spam filter reads them: SpamAssassin's own MIME and
header tests (Debian's ``spamassassin``, local tests only: no network, no DNS).

The filter's verdict on content is the desk's business; its structural tests are ours.  A
message that trips one (a quoted-printable line too long, a missing Message-ID or Date, a
bad charset or transfer encoding, an HTML part with no text part) is malformed, and some
mail systems file malformed mail as spam.  Skips, saying why, without ``spamassassin``;
``.ci/run`` installs it from Debian when it can.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from test_email_rfc import alert_email, news_digest, news_match

from monitor.deliver.render.email_mime import digest_email

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = pytest.mark.skipif(
    SPAMASSASSIN is None,
    reason="spamassassin is not installed (Debian: apt-get install spamassassin); "
    ".ci/run installs it when it can",
)

STRUCTURAL = re.compile(
    r"^(MIME_|MISSING_|INVALID_|BAD_|HEADER_|MPART_|EMPTY_|CTE_|CHARSET_|MSGID_|DATE_|"
    r"FROM_(?!LOCAL)|SUBJ_|TO_(?!NO_BRKTS)|HTML_MIME_|HTML_TAG_BALANCE|__)"
)
"""SpamAssassin test names that say a message is malformed, not what it is about."""


def spam_tests(raw: bytes) -> tuple[str, set[str]]:
    """SpamAssassin's verdict ("Yes"/"No") and the tests that fired, local tests only."""
    assert SPAMASSASSIN is not None
    result = subprocess.run(
        [SPAMASSASSIN, "--local", "--cf", "use_bayes 0"],
        input=raw,
        capture_output=True,
        check=True,
        timeout=120,
    )
    headers = result.stdout.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: (\w+),.*?tests=(.*?) autolearn", headers, re.M | re.S)
    assert status is not None, headers
    fired = {t for t in re.split(r"[\s,]+", status.group(2)) if t and t != "none"}
    return status.group(1), fired


@pytest.mark.parametrize("lang", ["ru", "zh", "en"])
def test_an_alert_email_trips_no_structural_test(lang: str) -> None:
    verdict, fired = spam_tests(alert_email(news_match(lang)).as_bytes())
    assert verdict == "No", fired
    assert not {t for t in fired if STRUCTURAL.match(t)}, fired


def test_a_digest_email_in_three_languages_trips_no_structural_test() -> None:
    digest = news_digest("ru", "zh", "en", "ru", "zh", "en")
    message = digest_email(
        digest,
        sender="Monitor <alerts@example.org>",
        recipients=["desk@example.org"],
        now=digest.closes,
    )
    verdict, fired = spam_tests(message.as_bytes())
    assert verdict == "No", fired
    assert not {t for t in fired if STRUCTURAL.match(t)}, fired


def test_the_check_can_fail_on_a_malformed_message() -> None:
    """The same alert without its Date and Message-ID, as a broken renderer would send it:
    SpamAssassin's structural tests fire, so the tests above can fail."""
    message = alert_email(news_match("en", item="w:2"))
    del message["Date"]
    del message["Message-ID"]
    _, fired = spam_tests(message.as_bytes())
    assert {"MISSING_DATE", "MISSING_MID"} <= fired
