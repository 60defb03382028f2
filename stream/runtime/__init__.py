"""What every driver shares: what an input message becomes, the topics and records besides the
changes, the idle clock, settings, metrics and the HTTP server. No Kafka client here."""
