"""`python -m orchestration.gateway`: the gateway service (uvicorn on settings.gateway_host:gateway_port)."""

from orchestration.gateway.app import main

main()
