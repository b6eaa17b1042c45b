"""QLearner: convergence on MDPs with known optimal policies, both engines, files, merging."""

from __future__ import annotations

import hashlib
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
