"""Who is in a segment and why, from a worker's committed stores: the members export, the
`members` and `explain` commands, and their HTTP routes (the explanation is stream.rules')."""
