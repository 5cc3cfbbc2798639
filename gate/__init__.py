"""mecodes gate: the login check Caddy's `forward_auth` asks before every request but the health check
(`python -m gate HOST PORT`). It builds on the domain's rules (domain/login_gate.py) and never on the sidecar or the
worker.
"""
