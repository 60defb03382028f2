"""Who is in a segment and why: members, explanations, their commands and HTTP routes."""
