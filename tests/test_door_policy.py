"""Decision policy and lockout as pure state machines driven by a fake clock."""

from __future__ import annotations

from doubles import FakeClock, enrolled, stranger

from edgeface.door.config import LockoutConfig, PolicyConfig
from edgeface.door.identify import Observation
from edgeface.door.lockout import GLOBAL, Lockout
from edgeface.door.policy import DecisionPolicy, Verdict

NO_FACE = Observation.no_face(0.5)
ALICE, BOB = enrolled("id-alice"), enrolled("id-bob")
X = stranger()


def feed(policy: DecisionPolicy, clock: FakeClock, obs: list[Observation], dt: float = 0.2):
    out = []
    for o in obs:
        out.append(policy.observe(o))
        clock.advance(dt)
    return [d.verdict for d in out]


def make(**kw: float) -> tuple[DecisionPolicy, FakeClock]:
    clock = FakeClock()
    return DecisionPolicy(PolicyConfig(**kw), clock), clock  # type: ignore[arg-type]


def test_three_of_five_unlocks_and_reports_the_identity() -> None:
    policy, clock = make()
    verdicts = feed(policy, clock, [ALICE, X, ALICE, ALICE])
    assert verdicts == [Verdict.PENDING, Verdict.PENDING, Verdict.PENDING, Verdict.UNLOCK]
    assert policy.is_unlocked


def test_one_good_frame_alone_never_unlocks() -> None:
    policy, clock = make()
    verdicts = feed(policy, clock, [ALICE] + [NO_FACE] * 30)
    assert Verdict.UNLOCK not in verdicts
    verdicts = feed(policy, clock, [ALICE, X, X, X, X, ALICE, X, X, X, X] * 3)
    assert Verdict.UNLOCK not in verdicts  # never 3 matches among 5 consecutive frames


def test_votes_of_different_identities_do_not_add_up() -> None:
    policy, clock = make()
    assert Verdict.UNLOCK not in feed(policy, clock, [ALICE, BOB, ALICE, BOB, X])


def test_matches_spread_beyond_the_window_do_not_unlock() -> None:
    policy, clock = make(window_s=1.0)
    assert Verdict.UNLOCK not in feed(policy, clock, [ALICE, ALICE, ALICE], dt=0.6)
    policy, clock = make(window_s=1.0)
    assert feed(policy, clock, [ALICE, ALICE, ALICE], dt=0.4)[-1] is Verdict.UNLOCK


def test_score_below_threshold_does_not_vote_even_with_an_id() -> None:
    policy, clock = make()
    weak = Observation("id-alice", "alice", 0.49, 0.5, 0.99, 120)
    assert Verdict.UNLOCK not in feed(policy, clock, [weak] * 10)


def test_small_or_blurry_faces_are_ignored_not_rejected() -> None:
    policy, clock = make(min_face_size=80, min_quality=0.9)
    small = Observation("id-alice", "a", 0.9, 0.5, 0.99, 40)
    blurry = Observation("id-alice", "a", 0.9, 0.5, 0.5, 120)
    assert set(feed(policy, clock, [small, blurry] * 5)) == {Verdict.IGNORED}


def test_relock_after_unlock_time_then_cooldown() -> None:
    policy, clock = make(unlock_s=5.0, cooldown_s=2.0)
    assert feed(policy, clock, [ALICE] * 3)[-1] is Verdict.UNLOCK
    assert feed(policy, clock, [ALICE] * 5) == [Verdict.OPEN] * 5  # no re-trigger while open
    clock.advance(5.0)
    relock = policy.tick()
    assert relock is not None and relock.verdict is Verdict.RELOCK
    assert not policy.is_unlocked
    assert feed(policy, clock, [ALICE] * 5, dt=0.3) == [Verdict.COOLDOWN] * 5  # 1.5 s < 2 s
    clock.advance(0.6)
    assert feed(policy, clock, [ALICE] * 3)[-1] is Verdict.UNLOCK


def test_failed_attempts_are_counted_per_attempt_not_per_frame() -> None:
    policy, clock = make()
    verdicts = feed(policy, clock, [X] * 10)
    assert verdicts.count(Verdict.REJECTED) == 2  # two attempts of 5 frames
    # a partial attempt that goes stale (person leaves) counts once, when it ends
    policy, clock = make(window_s=1.0)
    feed(policy, clock, [X, X])
    clock.advance(2.0)
    stale = policy.tick()
    assert stale is not None and stale.verdict is Verdict.REJECTED
    # an enrolled person's approach that ends in an unlock is not a failure
    policy, clock = make()
    assert Verdict.REJECTED not in feed(policy, clock, [X, ALICE, ALICE, ALICE])


def test_force_lock_resets_votes_and_starts_cooldown() -> None:
    policy, clock = make(cooldown_s=2.0)
    feed(policy, clock, [ALICE] * 3)
    policy.force_lock()
    assert not policy.is_unlocked
    assert feed(policy, clock, [ALICE])[0] is Verdict.COOLDOWN


# ------------------------------------------------------------------- lockout


def test_five_failures_in_a_minute_pause_thirty_seconds_doubling() -> None:
    clock = FakeClock()
    lock = Lockout(LockoutConfig(), clock)
    for _ in range(4):
        assert lock.record_failure("cam") == []
        clock.advance(10)
    events = lock.record_failure("cam")
    assert [(e.scope, e.pause_s, e.level) for e in events] == [("cam", 30.0, 1)]
    assert lock.active("cam") is not None
    clock.advance(29.9)
    assert lock.active("cam") is not None
    clock.advance(0.2)
    assert lock.active("cam") is None  # expired
    for _ in range(5):
        events = lock.record_failure("cam")
        clock.advance(1)
    assert [(e.pause_s, e.level) for e in events] == [(60.0, 2)]  # doubled


def test_failures_spread_over_more_than_the_window_do_not_lock() -> None:
    clock = FakeClock()
    lock = Lockout(LockoutConfig(), clock)
    for _ in range(20):
        assert lock.record_failure("cam") == []
        clock.advance(16)  # 4 per minute


def test_pause_is_capped_and_forgotten_after_quiet_time() -> None:
    clock = FakeClock()
    cfg = LockoutConfig(failures=2, pause_s=30, max_pause_s=100, global_failures=1000)
    lock = Lockout(cfg, clock)
    pauses = []
    for _ in range(5):
        lock.record_failure("cam")
        pauses += [e.pause_s for e in lock.record_failure("cam")]
        clock.advance(pauses[-1] + 1)
    assert pauses == [30, 60, 100, 100, 100]
    clock.advance(cfg.reset_after_s + 1)
    lock.record_failure("cam")
    assert [e.pause_s for e in lock.record_failure("cam")] == [30]


def test_global_budget_spans_sources_and_success_resets_a_source() -> None:
    clock = FakeClock()
    lock = Lockout(LockoutConfig(failures=5, global_failures=6), clock)
    for i in range(6):
        events = lock.record_failure(f"cam{i % 3}")
    assert [e.scope for e in events] == [GLOBAL]
    assert lock.active("cam-other") is not None  # the global lockout blocks every source
    clock.advance(31)
    lock.record_failure("cam0")
    lock.record_success("cam0")
    assert lock.trackers["cam0"].failures == type(lock.trackers["cam0"].failures)()
