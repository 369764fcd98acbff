"""Settings package: base.py holds everything; dev/test/prod are small overrides."""
