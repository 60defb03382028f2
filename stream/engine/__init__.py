"""The pure engine: fold an event into a customer's state, re-evaluate the segments it can move,
fire time-driven moves, switch definitions. No I/O, no clock of its own: drivers bring both.

core (Engine), fold, timers; store: the StateStore port it reads and writes states through, and the
in-memory store; redefinition: what a definition change asks of the customers already stored."""
