"""The pure engine: fold an event into a customer's state, re-evaluate the segments it can move,
fire time-driven moves, switch definitions; states behind the StateStore port. No I/O, no clock
of its own: drivers bring both."""
