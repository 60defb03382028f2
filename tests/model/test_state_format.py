"""Stored states written by earlier builds restore unchanged (STATE_FORMAT 1)."""
from __future__ import annotations

from stream.model.state import dump_state, load_state

# A record as the build before windows became tuples wrote it (their times as msgpack arrays, as
# they still are): CustomerState(first_seen=1, last_seen=2, streams={"product_viewed:product":
# {"p1": [1, 2], "p2": [2]}}, seen={"e1": 2}, member={"vip": 2}, id_hash=7).
STORED = bytes.fromhex(
    "01dc001c010280c08000cb0000000000000000c0c000c090c0c0c0c0c081b670726f647563745f7669657765643a70726f"
    "6475637482a27031920102a270329102c0c0c0c0c08081a265310281a3766970028007")


def test_a_stored_state_restores_and_is_written_back_byte_for_byte():
    state = load_state(STORED)
    assert state.streams == {"product_viewed:product": {"p1": (1, 2), "p2": (2,)}}
    assert (state.first_seen, state.last_seen, state.seen, state.member, state.id_hash) == (1, 2, {"e1": 2},
                                                                                            {"vip": 2}, 7)
    assert dump_state(state) == STORED
