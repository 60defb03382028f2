"""The native runtime: a confluent-kafka consumer group and a transactional producer around the
engine, one Kafka transaction per batch. loop: the Worker (its clients, the loop, rebalances);
partition: an input partition's store and engine; restore: a store brought up to its changelog's
end; transaction: a batch's commit, and the way back after a failed one."""
