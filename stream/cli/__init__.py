"""The `segments` command, one module per command. Arguments are parsed here and nowhere below:
the other packages take settings already built."""
