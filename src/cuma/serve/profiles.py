"""Request profiles: checked against the adapter's template, rendered once, encoded once per text.

The adapter was trained on profiles rendered with its saved template, so a request's mapping goes
through the same template before the frozen encoder sees it; a ready sentence is encoded as written.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Protocol

import torch

from cuma.data.profiles import Profile, ProfileTemplate
from cuma.serve.errors import invalid


class ProfileEncoder(Protocol):
    """What the server needs of a demographic encoder (`cuma.encoder.DemographicEncoder` and the
    `cuma.quick.RandomProfileEncoder` stand-in both fit)."""

    dim: int

    def encode(self, items: Sequence[str]) -> torch.Tensor: ...


class ProfileCodec:
    """Validates, renders and encodes request profiles; encodings are cached by rendered text.

    Args:
        encoder: the adapter's frozen demographic encoder.
        template: the adapter's profile template.
        fields: the profile fields a request may name; None takes the template's own parts. With
            neither (the free-form ``KEY_VALUE`` template) any field is rendered.
        cache_size: most encodings kept (least recently used dropped first).
    """

    def __init__(
        self,
        encoder: ProfileEncoder,
        template: ProfileTemplate,
        fields: Sequence[str] | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.encoder = encoder
        self.template = template
        self.fields = tuple(fields) if fields is not None else tuple(dict(template.parts))
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def render(self, profile: Mapping[str, object] | str) -> str:
        """The text the encoder reads; a 400 naming ``profile`` for unknown fields or no values at all."""
        if isinstance(profile, str):
            text = profile.strip()
        else:
            unknown = [name for name in profile if self.fields and name not in self.fields]
            if unknown:
                raise invalid(
                    f"unknown profile field(s) {unknown}; this adapter's template knows {list(self.fields)}",
                    param="profile",
                    code="unknown_profile_field",
                )
            has_values = any(value is not None for value in Profile(profile).values())
            text = self.template.render(profile) if has_values else ""
        if not text.strip():
            raise invalid(
                f"profile {profile!r} is empty; give at least one field a value",
                param="profile",
                code="empty_profile",
            )
        return text

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Float tensor [len(texts), dim]; texts seen before are not encoded again."""
        missing = [text for text in dict.fromkeys(texts) if text not in self._cache]
        if missing:
            for text, vector in zip(missing, self.encoder.encode(missing), strict=True):
                self._cache[text] = vector.detach().float().cpu()
        rows = []
        for text in texts:
            self._cache.move_to_end(text)
            rows.append(self._cache[text])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(rows) if rows else torch.empty(0, self.encoder.dim)

    def __len__(self) -> int:
        return len(self._cache)
