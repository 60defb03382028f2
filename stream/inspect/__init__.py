"""Who is in a segment and why, from a worker's committed stores: the members export and the
worker's HTTP routes for members and explanations (the explanation itself is stream.rules'; the
`members` and `explain` commands are stream.cli.members_explain)."""
