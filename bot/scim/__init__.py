"""SCIM 2.0 provisioning (RFC 7643, RFC 7644) at /scim/v2, for Okta, Microsoft Entra ID and the like.

api (HTTP), tokens (bearer tokens), schemas (resources and discovery), filters (filter -> SQL),
attributes (attributes/excludedAttributes), users and groups (the work), errors (SCIM's error answers).
"""
