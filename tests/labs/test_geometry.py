"""The start request carries the page's terminal geometry (issue 15, item 1)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("geometry", [{"cols": 0, "rows": 24}, {"cols": "80", "rows": 24},
                                      {"cols": 80, "rows": 501}, {"cols": 1.5, "rows": 24}])
def test_a_start_request_with_a_geometry_out_of_range_is_refused_with_a_message(
        make_user, client, transactional_db, geometry):
    client.force_login(make_user())
    resp = client.post("/api/sessions/", {"lab": "no-such-lab", **geometry}, content_type="application/json")
    assert resp.status_code == 400 and "cols and rows" in resp.json()["error"]
