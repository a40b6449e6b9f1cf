"""When an asker or an idle actor busy-polls: while polls catch something, else rarely."""

from __future__ import annotations

from runtime.wire.polling import MISSES, PROBE_EVERY, PollBackoff


def test_polling_goes_on_while_it_catches_and_backs_off_to_one_in_sixteen_after_misses() -> None:
    backoff = PollBackoff()
    for _ in range(10):
        assert backoff.should_poll()
        backoff.caught(True)
    for _ in range(MISSES):
        assert backoff.should_poll()
        backoff.caught(False)
    decisions = [backoff.should_poll() for _ in range(3 * PROBE_EVERY)]
    assert decisions.count(True) == 3  # a probe every PROBE_EVERY times
    backoff.caught(True)  # a probe caught something: back to polling every time
    assert all(backoff.should_poll() for _ in range(5))
