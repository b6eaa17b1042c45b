"""QLearner: convergence on MDPs with known optimal policies, both engines, files, merging."""

from __future__ import annotations

import hashlib
import os
import pickle
import struct

import numpy as np
import pytest

from perfsdk import Discretizer, QLearner
from perfsdk._native import kernels as K

LEFT, RIGHT = 0, 1


def chain(n: int = 8):
    """States 0..n-1; RIGHT moves on, LEFT goes back; reaching n-1 pays 1 and ends."""
    transitions = np.array([[max(s - 1, 0), min(s + 1, n - 1)] for s in range(n)])
    rewards = np.zeros((n, 2))
    rewards[n - 2, RIGHT] = 1.0
    terminal = np.zeros(n, bool)
    terminal[n - 1] = True
    return transitions, rewards, terminal


def test_learns_the_optimal_policy_on_a_chain():
    transitions, rewards, terminal = chain()
    q = QLearner(8, 2, alpha=0.5, gamma=0.9, epsilon=1.0, epsilon_min=0.05, epsilon_decay=0.999, seed=3)
    q.run_episodes(transitions, rewards, terminal, start=0, episodes=500, max_steps=100)
    assert [q.greedy(s) for s in range(7)] == [RIGHT] * 7
    np.testing.assert_allclose(q.q[:7, RIGHT], 0.9 ** np.arange(6, -1, -1), rtol=0.05)


def test_learns_shortest_paths_on_a_grid():
    side = 4
    goal = side * side - 1
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    transitions = np.zeros((side * side, 4), int)
    rewards = np.full((side * side, 4), -1.0)
    for s in range(side * side):
        r, c = divmod(s, side)
        for a, (dr, dc) in enumerate(moves):
            nr, nc = min(max(r + dr, 0), side - 1), min(max(c + dc, 0), side - 1)
            transitions[s, a] = nr * side + nc
    terminal = np.zeros(side * side, bool)
    terminal[goal] = True
    q = QLearner(side * side, 4, alpha=0.5, gamma=1.0, epsilon=1.0, epsilon_min=0.1, epsilon_decay=0.9995, seed=5)
    q.run_episodes(transitions, rewards, terminal, start=0, episodes=2000, max_steps=200)
    for start in range(goal):
        s, steps = start, 0
        while s != goal and steps < 50:
            s, steps = transitions[s, q.greedy(s)], steps + 1
        r, c = divmod(start, side)
        assert steps == (side - 1 - r) + (side - 1 - c), start  # the Manhattan distance


def test_per_event_and_batch_engines_agree_bit_for_bit():
    transitions, rewards, terminal = chain()
    params = dict(alpha=0.3, gamma=0.8, epsilon=0.5, epsilon_decay=0.99, seed=11)
    batch = QLearner(8, 2, **params)
    totals = batch.run_episodes(transitions, rewards, terminal, episodes=50, max_steps=30)
    scalar = QLearner(8, 2, **params)
    for _ in range(50):
        s = 0
        for _ in range(30):
            a = scalar.act(s)
            s2 = transitions[s, a]
            scalar.learn(s, a, rewards[s, a], s2, done=bool(terminal[s2]))
            s = s2
            if terminal[s]:
                break
    assert np.array_equal(scalar.state, batch.state) and batch.steps == len(totals) * 30
    replay = QLearner(8, 2, **params)
    rng = np.random.default_rng(0)
    s, a = rng.integers(0, 8, 500), rng.integers(0, 2, 500)
    r, s2 = rng.normal(size=500), rng.integers(0, 8, 500)
    replay.learn_many(s, a, r, s2)
    one_by_one = QLearner(8, 2, **params)
    for k in range(500):
        one_by_one.learn(int(s[k]), int(a[k]), float(r[k]), int(s2[k]))
    assert np.array_equal(replay.state, one_by_one.state)


def test_seed_makes_exploration_reproducible():
    a, b, c = (QLearner(4, 3, epsilon=1.0, seed=seed) for seed in (7, 7, 8))
    acts = [[learner.act(0) for _ in range(50)] for learner in (a, b, c)]
    assert acts[0] == acts[1] != acts[2] and set(acts[0]) == {0, 1, 2}


def test_epsilon_decays_to_its_floor():
    q = QLearner(2, 2, epsilon=1.0, epsilon_min=0.2, epsilon_decay=0.5)
    for _ in range(10):
        q.act(0)
    assert q.epsilon == 0.2


def test_save_load_round_trip_and_corrupt_files(tmp_path):
    q = QLearner(5, 3, alpha=0.2, seed=4)
    q.learn_many([0, 1, 2], [1, 2, 0], [1.0, -1.0, 0.5], [1, 2, 3])
    path = tmp_path / "q.bin"
    q.save(path)
    loaded = QLearner.load(path)
    assert np.array_equal(loaded.state, q.state) and repr(loaded) == repr(q)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    (tmp_path / "flipped.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        QLearner.load(tmp_path / "flipped.bin")
    (tmp_path / "short.bin").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="checksum|not a perfsdk"):
        QLearner.load(tmp_path / "short.bin")
    (tmp_path / "foreign.bin").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="not a perfsdk Q-learner file"):
        QLearner.load(tmp_path / "foreign.bin")

    def resealed(name, body):  # a well-formed file (valid checksum) with a changed body
        (tmp_path / name).write_bytes(body + hashlib.sha256(body).digest())
        return tmp_path / name

    body = path.read_bytes()[:-32]
    newer = body[:8] + struct.pack("<I", 99) + body[12:]  # after the 8-byte magic
    with pytest.raises(ValueError, match="file version 99"):
        QLearner.load(resealed("newer.bin", newer))
    with pytest.raises(ValueError, match="has .* bytes, its header says"):
        QLearner.load(resealed("ragged.bin", body + b"\x00\x01\x02"))
    header_len = struct.unpack_from("<I", body, 12)[0]
    table = np.frombuffer(body[16 + header_len:], dtype=np.float64).copy()
    table[K.QL_ALPHA] = 0.9  # alpha in the table, 0.2 in the header
    with pytest.raises(ValueError, match="parameters do not match"):
        QLearner.load(resealed("mixed.bin", body[: 16 + header_len] + table.tobytes()))


def test_merge_is_visit_weighted():
    a, b = QLearner(2, 2, alpha=1.0), QLearner(2, 2, alpha=1.0)
    a.learn(0, 0, 1.0, 1, done=True)  # Q=1, 1 visit
    for _ in range(3):
        b.learn(0, 0, 5.0, 1, done=True)  # Q=5, 3 visits
    b.learn(1, 1, 2.0, 0, done=True)
    merged = a.merge([b])
    assert merged.q[0, 0] == pytest.approx((1 * 1 + 3 * 5) / 4)
    assert merged.q[1, 1] == 2.0 and merged.visits[0, 0] == 4
    with pytest.raises(ValueError, match="same n_states"):
        a.merge([QLearner(3, 2)])


def test_a_merged_learner_survives_save_and_load(tmp_path):
    a, b = QLearner(4, 2, seed=1), QLearner(4, 2, seed=2)
    a.learn_many([0, 1], [1, 0], [1.0, 2.0], [1, 2])
    b.learn_many([1, 3], [0, 1], [4.0, -1.0], [2, 0])
    merged = a.merge([b])
    merged.save(tmp_path / "fleet.bin")
    loaded = QLearner.load(tmp_path / "fleet.bin")
    assert np.array_equal(loaded.q, merged.q) and np.array_equal(loaded.visits, merged.visits)


def test_pickle_and_explain():
    q = QLearner(3, 2, seed=2)
    q.learn(0, 1, 1.0, 2)
    copy = pickle.loads(pickle.dumps(q))
    assert np.array_equal(copy.state, q.state)
    assert q.explain(0) == {"state": 0, "q_values": [0.0, 0.1], "visits": [0, 1],
                            "greedy_action": 1, "epsilon": 0.1}


@pytest.mark.parametrize("kwargs,argument", [
    ({"n_states": 0}, "n_states"), ({"n_actions": 1.5}, "n_actions"), ({"alpha": 0}, "alpha"),
    ({"gamma": 1.5}, "gamma"), ({"epsilon": -0.1}, "epsilon"), ({"seed": -1}, "seed"),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises((TypeError, ValueError), match=argument):  # TypeError for a wrong type
        QLearner(**{"n_states": 4, "n_actions": 2, **kwargs})


def test_bad_steps_are_refused_and_leave_the_table_alone():
    q = QLearner(3, 2)
    before = q.state.copy()
    for call in (lambda: q.learn(5, 0, 1.0, 0), lambda: q.learn(0, 2, 1.0, 0),
                 lambda: q.learn(0, 0, float("nan"), 0), lambda: q.act(-1),
                 lambda: q.learn_many([0], [0], [1.0], [9])):
        with pytest.raises(ValueError):
            call()
    assert np.array_equal(q.state, before)


def test_layout_constants_match_the_compiled_module():
    from perfsdk._native import _qlearn, layout

    assert _qlearn.LAYOUT == layout.constants() and K.QL_HEADER == layout.QL_HEADER


def test_discretizer():
    d = Discretizer({"hit_ratio": [0.5], "trend": [-0.1, 0.1]})
    assert d.n_states == 6
    assert {d({"hit_ratio": h, "trend": t}) for h in (0.1, 0.9) for t in (-1, 0, 1)} == set(range(6))
    assert d({"hit_ratio": float("nan"), "trend": -1}) == 0
    with pytest.raises(ValueError, match="increasing"):
        Discretizer({"x": [1.0, 0.5]})
    with pytest.raises(ValueError, match="missing feature"):
        d({"hit_ratio": 0.5})


def test_run_episodes_refuses_a_start_outside_the_table():
    transitions, rewards, terminal = chain(3)
    q = QLearner(3, 2)
    for start in (-1, 3):
        with pytest.raises(ValueError, match="start"):
            q.run_episodes(transitions, rewards, terminal, start=start)
    assert q.steps == 0


# -- found by a bug hunt -------------------------------------------------------------------------
def test_epsilon_below_its_floor_stays_there_in_both_engines():
    """The floor (default 0.01) lifted epsilon=0 at the first act: a learner told never to explore did."""
    q = QLearner(1, 100, epsilon=0.0, seed=3)
    assert {q.act(0) for _ in range(2000)} == {0} and q.epsilon == 0.0
    transitions, rewards, terminal = chain()
    params = dict(epsilon=0.005, epsilon_min=0.01, epsilon_decay=0.9, seed=2)
    batch = QLearner(8, 2, **params)
    batch.run_episodes(transitions, rewards, terminal, episodes=5, max_steps=20)
    scalar = QLearner(8, 2, **params)
    scalar.act(0)
    assert batch.epsilon == scalar.epsilon == 0.005


def test_a_step_whose_value_would_overflow_is_refused_by_both_engines():
    """Finite rewards near the float limit made Q infinite, then NaN, in every state leading there."""
    scalar = QLearner(1, 1, alpha=1.0, gamma=0.9)
    scalar.learn(0, 0, 1e308, 0)
    before = scalar.state.copy()
    with pytest.raises(ValueError, match="reward 1e\\+308 would take Q\\(0, 0\\) beyond the finite numbers"):
        scalar.learn(0, 0, 1e308, 0)
    assert np.array_equal(scalar.state, before)
    batch = QLearner(1, 1, alpha=1.0, gamma=0.9)
    with pytest.raises(ValueError, match=r"rewards\[1\] = 1e\+308"):
        batch.learn_many([0, 0, 0], [0, 0, 0], [1e308, 1e308, 1.0], [0, 0, 0])
    assert np.array_equal(batch.state, before)  # as a loop of learn would leave it
    episodes = QLearner(1, 1, alpha=1.0, gamma=0.9, epsilon=0.0)
    with pytest.raises(ValueError, match="episode 0"):
        episodes.run_episodes(np.zeros((1, 1), int), np.full((1, 1), 1e308), np.zeros(1, bool), max_steps=5)
    assert np.array_equal(episodes.q, before[K.QL_HEADER : K.QL_HEADER + 1].reshape(1, 1)) and episodes.steps == 1


def test_merge_refuses_another_gamma_and_never_overflows():
    """Another gamma's Q-values are in other units (they scale like r / (1 - gamma)); and
    (visits * Q).sum() overflowed for values near the float limit."""
    a = QLearner(2, 2, alpha=0.1)
    assert a.merge([QLearner(2, 2, alpha=0.9, epsilon=0.5)]).gamma == 0.9  # alpha is how it learns, not what
    with pytest.raises(ValueError, match="same gamma"):
        a.merge([QLearner(2, 2, alpha=0.9, gamma=0.1)])
    with pytest.raises(TypeError, match="merge needs QLearners"):
        a.merge([1])  # type: ignore[list-item]
    x, y = QLearner(1, 1, alpha=1.0, gamma=0.0), QLearner(1, 1, alpha=1.0, gamma=0.0)
    x.learn(0, 0, 1e308, 0)
    for _ in range(3):
        y.learn(0, 0, 1e308, 0)
    assert x.merge([y]).q[0, 0] == 1e308
    unvisited = QLearner(1, 1).merge([QLearner(1, 1)])
    assert unvisited.q[0, 0] == 0.0 and unvisited.visits[0, 0] == 0


def test_merge_caps_summed_visits_and_refuses_a_learner_no_file_could_hold(tmp_path):
    """Visits of 1e308 in two learners summed to inf, and inf / inf made every merged Q-value of
    the cell NaN (a fleet then wrote NaN into each instance's live learner)."""
    from perfsdk.adapt.qlearner import MAX_VISITS

    a, b = QLearner(2, 2), QLearner(2, 2)
    a.q[0, 0], b.q[0, 0] = -1.0, -3.0
    a.visits[0, 0], b.visits[0, 0] = MAX_VISITS, MAX_VISITS // 2  # the most learning counts to, and half
    merged = a.merge([b])
    assert merged.visits[0, 0] == MAX_VISITS and merged.q[0, 0] == pytest.approx(-5 / 3)  # weighed as counted
    merged.save(tmp_path / "merged.bin")
    assert QLearner.load(tmp_path / "merged.bin").visits[0, 0] == MAX_VISITS  # a merge loads again
    for value, shown in ((np.inf, "inf"), (1e308, "1e\\+308")):
        b.visits[0, 0] = value
        before = a.state.copy()
        with pytest.raises(ValueError, match=f"learner 1 .* holds a visit or step count of {shown}"):
            a.merge([b])
        with pytest.raises(ValueError, match=f"learner 0 .* holds a visit or step count of {shown}"):
            b.merge([a])
        assert np.array_equal(a.state, before)
    b.visits[0, 0], b.q[1, 1] = 1, np.nan
    with pytest.raises(ValueError, match="learner 1 .* Q-value that is not finite"):
        a.merge([b])


def test_run_episodes_refuses_rewards_that_are_not_finite():
    transitions, rewards, terminal = chain(3)
    q = QLearner(3, 2)
    for bad in (np.nan, np.inf):
        poisoned = rewards.copy()
        poisoned[0, 0] = bad
        with pytest.raises(ValueError, match="rewards must be finite"):
            q.run_episodes(transitions, poisoned, terminal, episodes=3)
    assert q.steps == 0 and np.isfinite(q.q).all()


@pytest.mark.parametrize("call,error,argument", [
    (lambda q: q.learn_many([0.9], [1], [1.0], [0]), TypeError, "states must hold integers"),
    (lambda q: q.learn_many([0], [1.7], [1.0], [0]), TypeError, "actions must hold integers"),
    (lambda q: q.learn_many([0], [1], ["1"], [0]), TypeError, "rewards must hold real numbers"),
    (lambda q: q.learn_many([0], [1], [1.0], [0.2]), TypeError, "next_states must hold integers"),
    (lambda q: q.learn_many([0], [1], [1.0], [0], dones=True), ValueError, "dones must have shape"),
    (lambda q: q.learn_many([[0, 1]], [[0, 1]], [[1.0, 1.0]], [[0, 1]]), ValueError, "states must have shape"),
    (lambda q: q.run_episodes(*chain(2), episodes=2.7), TypeError, "episodes"),
    (lambda q: q.run_episodes(*chain(2), start=0.5), TypeError, "start"),
    (lambda q: q.run_episodes(*chain(2), max_steps="9"), TypeError, "max_steps"),
    (lambda q: q.run_episodes(chain(2)[0] * 1.0, *chain(2)[1:]), TypeError, "transitions must hold integers"),
    (lambda q: q.run_episodes(chain(2)[0], chain(2)[1][:1], chain(2)[2]), ValueError, "rewards must have shape"),
])
def test_batches_refuse_what_learn_refuses_naming_the_argument(call, error, argument):
    """learn_many and run_episodes truncated float states, parsed reward strings, and failed
    on a scalar or 2-D input with numpy's errors."""
    q = QLearner(2, 2)
    with pytest.raises(error, match=argument):
        call(q)
    assert q.steps == 0 and not q.visits.any()


def test_load_refuses_a_table_no_learner_holds(tmp_path):
    """A file with a valid checksum but impossible contents was loaded as it was."""
    q = QLearner(3, 2, epsilon=0.5, epsilon_min=0.05, seed=4)
    q.learn(0, 1, 1.0, 1)
    q.save(tmp_path / "q.bin")
    body = (tmp_path / "q.bin").read_bytes()[:-32]
    header_len = struct.unpack_from("<I", body, 12)[0]
    size = 3 * 2
    for slot, value, problem in [
        (K.QL_HEADER + 1, np.inf, "Q-value that is not finite"),
        (K.QL_HEADER + 1, np.nan, r"Q-value that is not finite \(nan\)"),
        (K.QL_HEADER + size + 1, -5.0, "visit or step count"),
        (K.QL_HEADER + size + 1, np.inf, "visit or step count of inf"),  # passed: inf >= 0, inf == floor(inf)
        (K.QL_HEADER + size + 1, 1e308, r"visit or step count of 1e\+308"),  # two such summed to inf
        (K.QL_HEADER + size + 1, float(2**53 + 2), "visit or step count of 9007199254740994.0"),
        (K.QL_STEPS, np.nan, "visit or step count of nan"),
        (K.QL_HEADER + size, 0.5, "visit or step count"),
        (K.QL_STEPS, -3.5, "visit or step count"),
        (K.QL_EPSILON, 5.0, "epsilon 5.0 outside"),
        (K.QL_RNG_HI, 2.0**32, "generator state"),
        ((K.QL_RNG_HI, K.QL_RNG_LO), 0.0, "generator state"),
    ]:
        table = np.frombuffer(body[16 + header_len:], dtype=np.float64).copy()
        table[list(slot) if isinstance(slot, tuple) else slot] = value
        crafted = body[: 16 + header_len] + table.tobytes()
        (tmp_path / "crafted.bin").write_bytes(crafted + hashlib.sha256(crafted).digest())
        with pytest.raises(ValueError, match=problem):
            QLearner.load(tmp_path / "crafted.bin")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_load_refuses_a_fifo_and_an_oversized_file_before_reading(tmp_path):
    """A FIFO blocked the read forever; a 600 MB sparse file was read whole, then rejected."""
    q = QLearner(3, 2)
    q.save(tmp_path / "q.bin")
    os.mkfifo(tmp_path / "fifo.qtable")
    with pytest.raises(ValueError, match="not a regular file"):
        QLearner.load(tmp_path / "fifo.qtable")
    with pytest.raises(ValueError, match="not a regular file"):
        QLearner.load(tmp_path)
    with open(tmp_path / "huge.qtable", "wb") as f:
        f.truncate(600 * 2**20)  # sparse: no disk, and no read either
    with pytest.raises(ValueError, match="more than the"):
        QLearner.load(tmp_path / "huge.qtable", max_bytes=q.max_file_bytes())
    with pytest.raises(ValueError, match="more than the"):  # and by default, over what the largest learner takes
        QLearner.load(tmp_path / "huge.qtable")
    assert np.array_equal(QLearner.load(tmp_path / "q.bin", max_bytes=q.max_file_bytes()).state, q.state)


@pytest.mark.parametrize("features,error,message", [
    ({"x": "123"}, TypeError, "edges of 'x' must be a sequence of numbers"),
    ({"x": 0.5}, TypeError, "edges of 'x' must be a sequence of numbers"),
    ({"x": {3: 1, 1: 2}}, TypeError, "edges of 'x' must be a sequence of numbers"),
    ({"x": ["1", "2"]}, TypeError, "edges of 'x' must be numbers"),
    ({"x": [True, 2]}, TypeError, "edges of 'x' must be numbers"),
    ({"x": []}, ValueError, "edges of 'x' must hold one edge at least"),
    ([("x", [1.0])], TypeError, "features must map"),
    ({1: [1.0]}, TypeError, "feature names must be strings"),
])
def test_discretizer_refuses_edges_that_are_no_edges(features, error, message):
    with pytest.raises(error, match=message):
        Discretizer(features)


def test_discretizer_names_the_feature_of_a_bad_value_and_refuses_a_state_out_of_range():
    d = Discretizer({"hit_ratio": [0.25, 0.5, 0.75], "ghost_ratio": [0.05, 0.2]})
    for bad in ("0.5", None, 1j, np.array([0.1, 0.9])):
        with pytest.raises(TypeError, match="feature 'hit_ratio' must be a number"):
            d({"hit_ratio": bad, "ghost_ratio": 0.1})
    with pytest.raises(TypeError, match="values must map"):
        d([0.1, 0.2])  # type: ignore[arg-type]
    for state in (-1, d.n_states):
        with pytest.raises(ValueError, match="state must be an integer in \\[0, 11\\]"):
            d.describe(state)
    # kept: NaN is the lowest bucket, features it does not know are ignored
    assert d({"hit_ratio": float("nan"), "ghost_ratio": 0.1, "other": 9}) == 1
    assert d.describe(11) == {"hit_ratio": "[0.75, inf)", "ghost_ratio": "[0.2, inf)"}


def test_merge_averages_a_cell_over_the_learners_that_learned_it_not_the_zeros_of_the_others():
    """A peer that never saw a state publishes zeros there; averaged in, they made a move nobody
    tried (at -20, the starting value of the one peer there) look best at -6.67."""
    there, away, elsewhere = QLearner(3, 3, alpha=1.0), QLearner(3, 3), QLearner(3, 3, alpha=1.0)
    there.q[1] = -20.0  # its starting values in state 1, as a controller sets them ...
    there.learn(1, 0, -20.0, 1, done=True)  # ... then keep and shrink learned; grow never tried
    there.learn(1, 1, -22.0, 1, done=True)
    elsewhere.learn(2, 0, -5.0, 2, done=True)
    merged = away.merge([there, elsewhere])
    assert merged.q[1].tolist() == [-20.0, -22.0, -20.0]  # grow: the starting value where it was seen
    assert merged.visits[1].tolist() == [1, 1, 0] and merged.q[2, 0] == -5.0
    assert merged.q[0].tolist() == [0.0, 0.0, 0.0]  # a state none was in: as before
    with pytest.raises(TypeError, match="others must be an iterable of QLearners"):
        away.merge(there)  # type: ignore[arg-type]


@pytest.mark.parametrize("call, error, message", [
    (lambda q: q.learn(0.5, 0, 1.0, 1), TypeError, "state must be an integer, got 0.5"),
    (lambda q: q.learn(True, 0, 1.0, 1), TypeError, "state must be an integer, got True"),  # as learn_many
    (lambda q: q.learn(0, 1.0, 1.0, 1), TypeError, "action must be an integer"),
    (lambda q: q.learn(0, 0, 1.0, "1"), TypeError, "next_state must be an integer"),
    (lambda q: q.learn(0, 0, "x", 1), TypeError, "reward must be a number, got 'x'"),
    (lambda q: q.learn(0, 0, True, 1), TypeError, "reward must be a number, got True"),
    (lambda q: q.learn(0, 0, 10**400, 1), ValueError, "reward must be a finite number"),
    (lambda q: q.act(1.0), TypeError, "state must be an integer, got 1.0"),
    (lambda q: q.act(2**63), ValueError, "state must be in 0..2, got 9223372036854775808"),
    (lambda q: q.greedy(-(2**70)), ValueError, "state must be in 0..2"),
    (lambda q: q.explain(1.7), TypeError, "state must be an integer, got 1.7"),
    (lambda q: q.run_episodes(*chain(3), max_steps=2**63), ValueError, "max_steps"),  # ran no step at all
    (lambda q: q.run_episodes(*chain(3), max_steps=2**70), ValueError, "max_steps"),  # a Numba TypingError
])
def test_a_bad_argument_to_the_per_event_calls_is_named(call, error, message):
    """Cython's conversions said "'float' object cannot be interpreted as an integer" or "must be
    real number, not str", naming no argument; a boolean state was taken as 0 or 1."""
    q = QLearner(3, 2)
    before = q.state.copy()
    with pytest.raises(error, match=message):
        call(q)
    assert np.array_equal(q.state, before)
    assert q.act(np.int64(1)) in (0, 1) and q.learn(np.int64(0), 1, np.float32(0.5), 2) is None  # numpy's: kept


def test_sizes_and_max_bytes_are_checked_as_python_integers(tmp_path):
    """numpy's int64 product overflowed past the size check (then "Maximum allowed dimension
    exceeded"); ``max_bytes="10"`` failed comparing int with str."""
    with pytest.raises(ValueError, match="n_states \\* n_actions must be at most"):
        QLearner(np.int64(2**62), np.int64(4))
    q = QLearner(np.int64(2), np.int64(2))
    assert type(q.n_states) is int and type(q.n_actions) is int
    q.save(tmp_path / "q.bin")
    for bad, error in (("10", TypeError), (-1, ValueError)):
        with pytest.raises(error, match="max_bytes"):
            QLearner.load(tmp_path / "q.bin", max_bytes=bad)
    assert np.array_equal(QLearner.load(tmp_path / "q.bin", max_bytes=q.max_file_bytes()).state, q.state)
