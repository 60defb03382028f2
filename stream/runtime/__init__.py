"""What the runtimes (and backfill) share: what an input message becomes, the batch step, the
topics and the records besides the changes, the idle clock, settings, metrics and the HTTP
server. No Kafka client and no argument parsing here."""
