"""The API gateway: the one authenticated door for people and programs (FastAPI, /api/v1).

create_app(settings) builds the app; `python -m orchestration.gateway` serves it (uvicorn). Identities are users
(OAuth2 password flow) and API keys (client credentials); roles are sets of scopes (security.ROLES).
"""
