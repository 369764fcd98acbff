"""Claims the provider puts in ID tokens and userinfo: name, e-mail and groups."""
from __future__ import annotations

from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "profile", "preferred_username": "profile"}

    def get_additional_claims(self, request):
        user = request.user
        return {"preferred_username": user.username, "email": user.email, "given_name": user.first_name,
                "groups": sorted(user.groups.values_list("name", flat=True))}
