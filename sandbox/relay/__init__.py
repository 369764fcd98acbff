"""The per-host terminal relay: PTY masters of every sandbox on the host ⇄ Redis streams."""
