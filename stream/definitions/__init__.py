"""Which segment definitions a partition runs: the file and the definitions topic resolved,
and the live switch while a runtime runs, over a runtime-neutral partition protocol."""
