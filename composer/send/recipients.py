"""The one place where a message's recipient is made: who, and their links.

Every message (a subscriber's, the sample that ``build`` and ``preview``
show, a test copy) gets its per-subscriber values here: the address as the
address policy has it, the display name, the signed one-click unsubscribe
link and its mailto fallback, and the view-in-browser link.
"""

from __future__ import annotations

from composer.audience.tokens import sign
from composer.config import Settings
from composer.mail.message import Recipient

SAMPLE_NAME = "Sample Reader"
SAMPLE_EMAIL = "reader@example.org"
SAMPLE_ID = 0  # no subscriber has id 0: a sample's unsubscribe link changes nothing


def view_url(settings: Settings, issue_slug: str, edition: str | None = None) -> str:
    """The web version: the main edition's, or another edition's (``/es/``)."""
    tail = f"{edition}/" if edition else ""
    return f"{settings.base_url}/issues/{issue_slug}/{tail}"


class Recipients:
    """Recipients of one issue's messages, for one list (``""``: the whole newsletter)."""

    def __init__(self, settings: Settings, issue_slug: str, list_name: str = "") -> None:
        self.settings = settings
        self.list_name = list_name
        self.slug = issue_slug
        self.view_url = view_url(settings, issue_slug)
        self._views: dict[str | None, str] = {None: self.view_url}
        self._key = settings.secret_key.get()
        self._base = settings.base_url
        self._mailbox = settings.unsubscribe_mailbox

    def unsubscribe_urls(self, subscriber_id: int) -> tuple[str, str, str]:
        """The https one-click URL and the mailto fallback for List-Unsubscribe, and
        the preferences page (the same signed token names the subscriber)."""
        token = sign(self._key, subscriber_id, self.list_name)
        return (
            f"{self._base}/unsubscribe/{token}",
            f"mailto:{self._mailbox}?subject=unsubscribe%20{token}",
            f"{self._base}/preferences/{token}",
        )

    def view(self, edition: str | None) -> str:
        """The web version of ``edition`` (None: the main edition)."""
        url = self._views.get(edition)
        if url is None:
            url = self._views[edition] = view_url(self.settings, self.slug, edition)
        return url

    def subscriber(
        self, subscriber_id: int, email: str, name: str, edition: str | None = None
    ) -> Recipient:
        https, mailto, preferences = self.unsubscribe_urls(subscriber_id)
        return Recipient(
            key=str(subscriber_id),
            email=email,
            name=name,
            unsubscribe_url=https,
            unsubscribe_mailto=mailto,
            preferences_url=preferences,
            view_url=self.view(edition),
        )

    def sample(self, edition: str | None = None) -> Recipient:
        https, mailto, preferences = self.unsubscribe_urls(SAMPLE_ID)
        return Recipient(
            key="sample",
            email=SAMPLE_EMAIL,
            name=SAMPLE_NAME,
            unsubscribe_url=https,
            unsubscribe_mailto=mailto,
            preferences_url=preferences,
            view_url=self.view(edition),
        )

    def test_copy(self, email: str, edition: str | None = None) -> Recipient:
        https, mailto, preferences = self.unsubscribe_urls(SAMPLE_ID)
        return Recipient(
            key=f"test-{email}",
            email=email,
            name="",
            unsubscribe_url=https,
            unsubscribe_mailto=mailto,
            preferences_url=preferences,
            view_url=self.view(edition),
        )
