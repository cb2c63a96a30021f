"""The `sinks:` of a config: external systems every case change is mirrored to."""

from __future__ import annotations

import re
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from casebridge.config import WebhookUrl, checked_url
from gateway.config import Duration
from gateway.models import Frozen, Slug

__all__ = [
    "DynamicsMapping",
    "DynamicsSinkConfig",
    "SinkConfig",
    "WebhookSinkConfig",
    "as_guid",
    "sink_problems",
]

_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")


def as_guid(value: object) -> str | None:
    """`value` as a lower-case GUID, or None when it is not one (anything from outside:
    a config, a header, a change row)."""
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        return None
    return value.lower()


def _guid(value: str) -> str:
    guid = as_guid(value)
    if guid is None:
        raise ValueError(f"{value!r} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return guid


#: A GUID, in lower case (Dataverse's ids; compared as text).
Guid = Annotated[str, AfterValidator(_guid)]


def _https(value: str, what: str) -> str:
    """An https root URL (the API paths are added to it: no query or fragment)."""
    checked_url(value, ("https",), what)
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ValueError(f"{what} may not hold a query or a fragment")
    return value.rstrip("/")


class _SinkBase(Frozen):
    id: Slug
    #: how often the sink looks for changed cases
    every: Duration = Field(default=2.0, gt=0)
    #: cases mirrored per round (and per `$batch` request)
    batch: int = Field(default=100, ge=1, le=1000)
    #: the longest wait between retries of a failing case or an unreachable system
    max_retry: Duration = Field(default=300.0, gt=0)


class WebhookSinkConfig(_SinkBase):
    """Every case event, in order per case, as a signed JSON POST (the same headers as the
    team webhooks: `X-Husvakt-Delivery` is the same on every retry of one event)."""

    type: Literal["webhook"]
    url: WebhookUrl
    secret_file: Path | None = None
    timeout: Duration = 10.0


class DynamicsMapping(Frozen):
    """How a husvakt case becomes a Dynamics 365 incident (see the README's table)."""

    #: site id → the account (GUID) that is the case's customer
    accounts: dict[Slug, Guid] = Field(default_factory=dict)
    #: the customer of a site not in `accounts` (a case needs one)
    default_account: Guid | None = None
    #: condition → subject (GUID)
    subjects: dict[str, Guid] = Field(default_factory=dict)
    #: condition → case type (`casetypecode`: 1 question, 2 problem, 3 request)
    case_types: dict[str, int] = Field(default_factory=dict)
    default_case_type: int | None = 2
    #: husvakt priority → `prioritycode` (1 high, 2 normal, 3 low)
    priorities: dict[str, int] = Field(default_factory=lambda: {"P1": 1, "P2": 2, "P3": 3})
    #: `caseorigincode` (700610000 is IoT in Connected Field Service; null: leave unset)
    origin: int | None = 700610000
    #: Dynamics user (systemuser GUID) → husvakt user, for changes made in Dynamics
    users: dict[Guid, Slug] = Field(default_factory=dict)


class DynamicsSinkConfig(_SinkBase):
    """Cases as Dynamics 365 incidents (or Connected Field Service IoT alerts) through the
    Dataverse Web API, signed in as an application user (OAuth 2.0 client credentials)."""

    type: Literal["dynamics"]
    #: the environment, e.g. https://contoso.crm4.dynamics.com
    url: str
    tenant: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9.-]+$")
    client_id: Guid
    client_secret_file: Path | None = None
    #: a PEM file with the certificate and its private key (instead of a secret)
    certificate_file: Path | None = None
    #: default https://login.microsoftonline.com/<tenant>
    authority: str | None = None
    #: a CA bundle to trust besides the system's (a TLS-inspecting proxy, a test)
    ca_file: Path | None = None
    #: `incident`: cases are incidents; `iotalert`: cases are msdyn_iotalerts (CFS makes
    #: the case from the alert)
    create: Literal["incident", "iotalert"] = "incident"
    #: the incident column with the alternate key that holds the husvakt case id
    key: str = "hv_husvaktcaseid"
    mapping: DynamicsMapping = DynamicsMapping()
    #: how often changes made in Dynamics are fetched (change tracking); 0: never
    poll: Duration = Field(default=60.0, ge=0)
    timeout: Duration = 30.0
    #: links back to husvakt in the description
    link_base: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _https(value, "url")

    @field_validator("authority")
    @classmethod
    def _authority(cls, value: str | None) -> str | None:
        return None if value is None else _https(value, "authority")

    @field_validator("key")
    @classmethod
    def _column(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("key is a column's logical name (lower case, letters, _ and digits)")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if (self.client_secret_file is None) == (self.certificate_file is None):
            raise ValueError("give exactly one of client_secret_file and certificate_file")
        return self

    @property
    def api(self) -> str:
        """The Web API's root."""
        return f"{self.url}/api/data/v9.2/"

    @property
    def authority_url(self) -> str:
        return self.authority or f"https://login.microsoftonline.com/{self.tenant}"


SinkConfig = Annotated[WebhookSinkConfig | DynamicsSinkConfig, Field(discriminator="type")]


def sink_problems(
    sinks: Sequence[WebhookSinkConfig | DynamicsSinkConfig],
    *,
    sites: Sequence[str],
    conditions: Container[str],
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Sink ids used twice, and Dynamics mappings naming sites or conditions the config does
    not have, or leaving a site without a customer."""
    seen: dict[str, int] = {}
    for i, sink in enumerate(sinks):
        if sink.id in seen:
            yield (
                ("sinks", i, "id"),
                f"sink id {sink.id!r} is already used by sinks[{seen[sink.id]}]",
            )
        seen.setdefault(sink.id, i)
        if not isinstance(sink, DynamicsSinkConfig):
            continue
        mapping = sink.mapping
        for site in mapping.accounts:
            if site not in sites:
                yield ("sinks", i, "mapping", "accounts", site), f"no site {site!r} in 'sites'"
        for field in ("subjects", "case_types"):
            for condition in getattr(mapping, field):
                if condition not in conditions:
                    yield (
                        ("sinks", i, "mapping", field, condition),
                        f"no rule raises the condition {condition!r}",
                    )
        if mapping.default_account is None:
            for site in sites:
                if site not in mapping.accounts:
                    yield (
                        ("sinks", i, "mapping", "accounts"),
                        f"site {site!r} has no account (a Dynamics case needs a customer): "
                        "add it, or set default_account",
                    )
