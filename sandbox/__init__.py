"""The sandbox engine: image store, overlay snapshots, runc runtime, PTY relay.

Importable and testable without the web; labs/ talks to it through sandbox.service.
"""
