"""Template filters for the site navigation."""
from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def sees_cohorts(user) -> bool:
    """Show the Cohorts link to instructors and staff, and to trainees who joined one."""
    from cohorts.selectors import is_instructor

    if not user.is_authenticated:
        return False
    return is_instructor(user) or user.cohort_memberships.exists()
